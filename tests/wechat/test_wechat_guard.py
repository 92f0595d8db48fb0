"""The server URL's gate with the vectors from WeChat's documentation and wechatpy's tests."""

import hashlib

import pytest
from wechatpy.crypto import WeChatCrypto

from dispatch.kernel.settings import WechatSettings
from wechat.errors import BadSignature, MalformedDelivery, StaleDelivery
from wechat.guard import Signed, check_signature, open_envelope, parse_xml, seal_reply

# WeChat's message encryption sample (WXBizMsgCrypt demo), as wechatpy's tests use it.
SAMPLE = WechatSettings(app_id="wx2c2769f8efd9abc2", token="spamtest",
                        encoding_aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
SAMPLE_TIMESTAMP, SAMPLE_NONCE = "1409735669", "1320562132"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2Ld"
    "JF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTj"
    "g3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdU"
    "ue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=")
SAMPLE_ENVELOPE = (f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
                   f"<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>").encode()


def plain(token: str, timestamp: str, nonce: str) -> Signed:
    return Signed(signature=hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest(),
                  timestamp=timestamp, nonce=nonce)


def test_plain_signature_vector_from_wechatpy_is_accepted() -> None:
    signed = Signed(signature="f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", timestamp="1410685589", nonce="test")
    check_signature("test", signed, window_s=300, now=1410685589)


def test_a_signature_one_digit_off_is_refused() -> None:
    signed = Signed(signature="f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", timestamp="1410685589", nonce="test")
    with pytest.raises(BadSignature):
        check_signature("test", signed, window_s=300, now=1410685589)


@pytest.mark.parametrize("skew", [301, -301, 3600])
def test_a_delivery_outside_the_timestamp_window_is_refused_though_signed(skew: int) -> None:
    with pytest.raises(StaleDelivery):
        check_signature("test", plain("test", "1410685589", "n"), window_s=300, now=1410685589 + skew)


def test_a_non_numeric_timestamp_is_refused() -> None:
    with pytest.raises(StaleDelivery):
        check_signature("test", plain("test", "yesterday", "n"), window_s=300, now=1410685589)


def test_encrypted_sample_decrypts_to_the_documented_message() -> None:
    signed = Signed(signature="", timestamp=SAMPLE_TIMESTAMP, nonce=SAMPLE_NONCE,
                    msg_signature=SAMPLE_MSG_SIGNATURE, encrypt_type="aes")
    fields = parse_xml(open_envelope(SAMPLE_ENVELOPE, signed, SAMPLE))
    assert fields["FromUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert fields["Content"] == "abcdteT"
    assert fields["MsgId"] == "6054768590064713728"


def test_a_msg_signature_not_covering_the_ciphertext_is_refused() -> None:
    signed = Signed(signature="", timestamp=SAMPLE_TIMESTAMP, nonce="1320562133",
                    msg_signature=SAMPLE_MSG_SIGNATURE, encrypt_type="aes")
    with pytest.raises(BadSignature):
        open_envelope(SAMPLE_ENVELOPE, signed, SAMPLE)


def test_a_message_encrypted_for_another_app_is_refused() -> None:
    other = SAMPLE.model_copy(update={"app_id": "wx0000000000000000"})
    signed = Signed(signature="", timestamp=SAMPLE_TIMESTAMP, nonce=SAMPLE_NONCE,
                    msg_signature=SAMPLE_MSG_SIGNATURE, encrypt_type="aes")
    with pytest.raises(MalformedDelivery, match="another app id"):
        open_envelope(SAMPLE_ENVELOPE, signed, other)


def test_a_sealed_reply_decrypts_with_wechats_own_algorithm() -> None:
    signed = Signed(signature="", timestamp=SAMPLE_TIMESTAMP, nonce=SAMPLE_NONCE, encrypt_type="aes")
    sealed = seal_reply("<xml><Content><![CDATA[你好]]></Content></xml>", signed, SAMPLE)
    envelope = parse_xml(sealed)
    crypto = WeChatCrypto(SAMPLE.token, SAMPLE.encoding_aes_key, SAMPLE.app_id)
    opened = crypto.decrypt_message(sealed, envelope["MsgSignature"], SAMPLE_TIMESTAMP, SAMPLE_NONCE)
    assert "你好" in opened


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><C>&xxe;</C></xml>',
    b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><xml><C>&b;</C></xml>',
    b'<!DOCTYPE xml><xml><C>x</C></xml>',
    b"<xml><C>&undefined;</C></xml>",
    b"<xml><C>unclosed</xml>",
    b"not xml at all",
    b"<other><C>x</C></other>",
])
def test_xml_with_a_doctype_entities_or_no_xml_root_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedDelivery):
        parse_xml(body)
