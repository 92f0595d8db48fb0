"""Loopback stand-ins for the staff channels' providers, each checking the request as its documents say.

One HTTP server answers as all four (the paths do not overlap):
- DingTalk custom robot `POST /robot/send?access_token=&timestamp=&sign=`: with a secret, `sign` must be
  DingTalk's documented example computed here (timestamp + "\\n" + secret, HmacSHA256 keyed with the secret,
  Base64; the URL-encoding is undone by the query parser) and the timestamp within an hour; else 310000.
- WeCom group robot `POST /cgi-bin/webhook/send?key=`: an unknown key is 93000.
- Feishu bot `POST /open-apis/bot/v2/hook/{id}`: with a secret, the body's `sign` must be Feishu's documented
  example (HmacSHA256 keyed with timestamp + "\\n" + secret over nothing, Base64), timestamp in seconds within
  an hour; else code 19021.
- Aliyun SMS `GET /?Action=SendSms&...`: the RPC signature v1.0 recomputed from the query as Aliyun's
  signing document spells it (sorted, percent-encoded with + → %20, * → %2A, %7E → ~; "GET&%2F&" + the
  encoded query; HMAC-SHA1 keyed with secret + "&"); a mismatch is HTTP 400 SignatureDoesNotMatch, a
  number that is not a mobile number isv.MOBILE_NUMBER_ILLEGAL.
`fail_next` makes the next N requests answer HTTP 503 (a provider outage).
"""

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    provider: str
    target: str  # robot token / key / hook id, or the phone number
    body: dict[str, Any]


@dataclass
class Peer:
    dingtalk: dict[str, str | None] = field(default_factory=dict)  # access_token -> secret (None: unsigned)
    wecom: set[str] = field(default_factory=set)
    feishu: dict[str, str | None] = field(default_factory=dict)
    sms_keys: dict[str, str] = field(default_factory=dict)  # AccessKeyId -> AccessKeySecret
    received: list[Received] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (provider, why)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __enter__(self) -> "Peer":
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(json.loads(raw.decode("utf-8")) if raw else {})

            def _answer(self, body: dict[str, Any] | None) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
                with peer.lock:
                    if peer.fail_next > 0:
                        peer.fail_next -= 1
                        status, reply = 503, {"error": "outage"}
                    else:
                        status, reply = peer.route(url.path, url.query, query, body)
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of(self, provider: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.provider == provider]

    # --- the providers ----------------------------------------------------------------------------

    def route(self, path: str, raw_query: str, query: dict[str, str],
              body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if path == "/robot/send":
            return self._dingtalk(query, body or {})
        if path == "/cgi-bin/webhook/send":
            return self._wecom(query, body or {})
        if path.startswith("/open-apis/bot/v2/hook/"):
            return self._feishu(path.rsplit("/", 1)[-1], body or {})
        if path == "/" and query.get("Action") == "SendSms":
            return self._sms(raw_query, query)
        return 404, {"error": "no such endpoint"}

    def _dingtalk(self, query: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = query.get("access_token", "")
        if token not in self.dingtalk:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        secret = self.dingtalk[token]
        if secret is not None:
            timestamp = query.get("timestamp", "")
            # DingTalk's documented Python example, as it stands:
            secret_enc = secret.encode("utf-8")
            string_to_sign = "{}\n{}".format(timestamp, secret)  # noqa: UP032
            hmac_code = hmac.new(secret_enc, string_to_sign.encode("utf-8"), digestmod=hashlib.sha256).digest()
            expected = base64.b64encode(hmac_code).decode()
            fresh = timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < 3600 * 1000
            if not fresh or not hmac.compare_digest(expected, query.get("sign", "")):
                self.refused.append(("dingtalk", "sign"))
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
        if body.get("msgtype") != "markdown" or not body["markdown"].get("title") or not body["markdown"].get("text"):
            return 200, {"errcode": 40035, "errmsg": "缺少参数 json"}
        self.received.append(Received("dingtalk", token, body))
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _wecom(self, query: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = query.get("key", "")
        if key not in self.wecom:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        if body.get("msgtype") != "markdown" or not body["markdown"].get("content"):
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        self.received.append(Received("wecom", key, body))
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _feishu(self, hook: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if hook not in self.feishu:
            return 404, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
        secret = self.feishu[hook]
        if secret is not None:
            timestamp = str(body.get("timestamp", ""))
            # Feishu's documented Python example, as it stands:
            string_to_sign = "{}\n{}".format(timestamp, secret)  # noqa: UP032
            hmac_code = hmac.new(string_to_sign.encode("utf-8"), digestmod=hashlib.sha256).digest()
            expected = base64.b64encode(hmac_code).decode("utf-8")
            fresh = timestamp.isdigit() and abs(int(timestamp) - time.time()) < 3600
            if not fresh or not hmac.compare_digest(expected, str(body.get("sign", ""))):
                self.refused.append(("feishu", "sign"))
                return 200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
        if body.get("msg_type") != "interactive" or not body.get("card"):
            return 200, {"code": 9499, "msg": "Bad Request"}
        self.received.append(Received("feishu", hook, body))
        return 200, {"code": 0, "msg": "success", "data": {}}

    def _sms(self, raw_query: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        secret = self.sms_keys.get(query.get("AccessKeyId", ""))
        if secret is None:
            return 404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."}
        params = {k: v for k, v in query.items() if k != "Signature"}

        def encode(text: str) -> str:  # Aliyun's percentEncode
            return urllib.parse.quote(text, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

        canonical = "&".join(f"{encode(k)}={encode(params[k])}" for k in sorted(params))
        string_to_sign = "GET&" + encode("/") + "&" + encode(canonical)
        expected = base64.b64encode(hmac.new((secret + "&").encode(), string_to_sign.encode(),
                                            hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, query.get("Signature", "")):
            self.refused.append(("sms", "signature"))
            return 400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched."}
        for name in ("SignatureNonce", "Timestamp", "SignName", "TemplateCode", "TemplateParam"):
            if not params.get(name):
                return 400, {"Code": "MissingParameter", "Message": f"{name} is mandatory"}
        if re.fullmatch(r"1[3-9][0-9]{9}", params["PhoneNumbers"]) is None:
            return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}
        self.received.append(Received("sms", params["PhoneNumbers"], {
            "sign_name": params["SignName"], "template": params["TemplateCode"],
            "params": json.loads(params["TemplateParam"])}))
        return 200, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"}
