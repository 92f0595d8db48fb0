"""The server URL's gate: size, timestamp window and signature are checked before any XML is parsed.

wechatpy leaves these to us: its safe-mode `decrypt_message` parses the
envelope before it checks the signature, compares signatures with `!=`
(variable time) and keeps no replay window. So the plain signature over
(token, timestamp, nonce), which WeChat sends in every mode, is checked
first; only then is the envelope parsed, its `msg_signature` checked over the
ciphertext, and the plaintext decrypted with wechatpy's PrpCrypto.
"""

import hashlib
import hmac
import pyexpat
import struct
import time
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException

from dispatch.kernel.settings import WechatSettings
from wechat.errors import BadSignature, MalformedDelivery, StaleDelivery


@dataclass(frozen=True)
class Signed:
    """The query WeChat signs every delivery with (msg_signature only in safe mode)."""

    signature: str
    timestamp: str
    nonce: str
    msg_signature: str | None = None
    encrypt_type: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.encrypt_type == "aes"


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 over the parts sorted and joined (plain mode: token, timestamp, nonce)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(token: str, signed: Signed, *, window_s: int, now: float | None = None) -> None:
    """Refuse a delivery whose plain signature or timestamp is wrong; parses nothing.

    Raises:
        BadSignature: the signature does not match the token.
        StaleDelivery: the timestamp is outside `window_s` of now (a replay, or a clock far off).
    """
    expected = sha1_signature(token, signed.timestamp, signed.nonce)
    # Constant time: a byte-by-byte `!=` tells a prober how much of a guess was right.
    if not hmac.compare_digest(expected.encode(), signed.signature.encode()):
        raise BadSignature("the signature does not match")
    try:
        sent_at = int(signed.timestamp)
    except ValueError:
        raise StaleDelivery("the timestamp is not a number") from None
    if abs((now or time.time()) - sent_at) > window_s:
        raise StaleDelivery(f"the timestamp is more than {window_s} s away from now")


def _refuse_doctype(*_args: Any) -> None:
    raise ValueError("a DOCTYPE is not allowed")


class _NoDoctypeExpat:
    """expat as xmltodict uses it, refusing any DOCTYPE (xmltodict itself refuses entity declarations)."""

    @staticmethod
    def ParserCreate(*args: Any) -> Any:
        parser = pyexpat.ParserCreate(*args)
        parser.StartDoctypeDeclHandler = _refuse_doctype
        return parser


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """The children of a WeChat `<xml>` root, as strings.

    Raises:
        MalformedDelivery: not XML, no `<xml>` root, or a DOCTYPE / entity (XXE, billion laughs).
    """
    try:
        parsed = xmltodict.parse(body, expat=_NoDoctypeExpat, disable_entities=True)
    except (ExpatError, ValueError) as exc:
        raise MalformedDelivery(f"not an acceptable XML message: {exc}") from None
    root = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(root, dict):
        raise MalformedDelivery("the message has no <xml> root with fields")
    return root


def open_envelope(body: bytes, signed: Signed, cfg: WechatSettings) -> str:
    """The message XML of a delivery whose plain signature was checked: decrypted in safe mode.

    Raises:
        MalformedDelivery: no Encrypt field, or it does not decrypt for this app id.
        BadSignature: msg_signature does not cover the ciphertext.
    """
    if not signed.encrypted:
        return body.decode("utf-8", errors="replace")
    encrypt = parse_xml(body).get("Encrypt")
    if not isinstance(encrypt, str) or not signed.msg_signature:
        raise MalformedDelivery("a safe-mode delivery needs Encrypt and msg_signature")
    expected = sha1_signature(cfg.token, signed.timestamp, signed.nonce, encrypt)
    if not hmac.compare_digest(expected.encode(), signed.msg_signature.encode()):
        raise BadSignature("msg_signature does not match the ciphertext")
    try:
        plain: str = PrpCrypto(_crypto(cfg).key).decrypt(encrypt, cfg.app_id)
    except InvalidAppIdException:
        raise MalformedDelivery("the message was encrypted for another app id") from None
    except (ValueError, TypeError, IndexError, struct.error) as exc:  # cryptography's too: ValueError
        raise MalformedDelivery(f"the ciphertext does not decrypt: {type(exc).__name__}") from None
    return plain


def seal_reply(reply_xml: str, signed: Signed, cfg: WechatSettings) -> str:
    """The reply as sent back: encrypted and signed in safe mode, as it is in plain mode."""
    if not signed.encrypted:
        return reply_xml
    sealed: str = _crypto(cfg).encrypt_message(reply_xml, signed.nonce, signed.timestamp)
    return sealed


def _crypto(cfg: WechatSettings) -> WeChatCrypto:
    return WeChatCrypto(cfg.token, cfg.encoding_aes_key, cfg.app_id)
