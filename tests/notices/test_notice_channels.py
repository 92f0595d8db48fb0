"""Each staff channel's adapter against its provider's loopback peer, signatures checked as documented."""

import time
from email.message import Message as Mail

import pytest

from dispatch.kernel.settings import NoticeSettings, Settings
from dispatch.notices.adapters import (
    Address,
    AliyunSms,
    DingtalkRobot,
    Email,
    FeishuBot,
    Message,
    Sms,
    WecomRobot,
)
from dispatch.tickets import notify
from tests.notices.conftest import REFUSED_MAILBOX, Mailbox
from tests.notices.peers import Peer

MESSAGE = Message(title="【升级1】XL-20261205-0042 宽带故障 已超时：网格值机员",
                  markdown="- 工单：XL-20261205-0042\n- 类型：宽带故障\n- 网格：宝力根街道\n- 状态：超时\n"
                           "- 时限：12-05 01:40\n\n[在控制台查看](http://fieldpool.test/console?ticket=42)",
                  link="http://fieldpool.test/console?ticket=42",
                  params={"number": "XL-20261205-0042", "type": "宽带故障", "title": "XL-20261205-0042 宽带故障"})
DING_SECRET = "SEC6d7c1f0b4b4f4a1e9d0c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e"


def cfg(notice_settings: Settings) -> NoticeSettings:
    return notice_settings.notices


def test_dingtalk_robot_posts_a_signed_markdown_card_the_robot_accepts(peer: Peer, notice_settings: Settings) -> None:
    peer.dingtalk["d0a1b2c3d4e5f6a7"] = DING_SECRET
    DingtalkRobot(cfg(notice_settings)).send(Address("d0a1b2c3d4e5f6a7", DING_SECRET), MESSAGE)
    [got] = peer.of("dingtalk")
    assert got.target == "d0a1b2c3d4e5f6a7"
    assert got.body["markdown"]["title"] == MESSAGE.title
    assert "XL-20261205-0042" in got.body["markdown"]["text"] and "ticket=42" in got.body["markdown"]["text"]


def test_dingtalk_robot_with_the_wrong_secret_is_undeliverable(peer: Peer, notice_settings: Settings) -> None:
    peer.dingtalk["d0a1b2c3d4e5f6a7"] = DING_SECRET
    with pytest.raises(notify.Undeliverable, match="310000"):
        DingtalkRobot(cfg(notice_settings)).send(Address("d0a1b2c3d4e5f6a7", "SECnot-the-one"), MESSAGE)
    assert peer.refused == [("dingtalk", "sign")] and not peer.of("dingtalk")


def test_dingtalk_signature_too_old_for_the_robot_is_refused(peer: Peer, notice_settings: Settings) -> None:
    peer.dingtalk["d0a1b2c3d4e5f6a7"] = DING_SECRET
    two_hours_ago = DingtalkRobot(cfg(notice_settings), clock=lambda: time.time() - 7200)
    with pytest.raises(notify.Undeliverable):
        two_hours_ago.send(Address("d0a1b2c3d4e5f6a7", DING_SECRET), MESSAGE)


def test_feishu_bot_posts_a_signed_interactive_card(peer: Peer, notice_settings: Settings) -> None:
    peer.feishu["2f8b5c1e-hook"] = "feishu-sign-secret"
    FeishuBot(cfg(notice_settings)).send(Address("2f8b5c1e-hook", "feishu-sign-secret"), MESSAGE)
    [got] = peer.of("feishu")
    assert got.body["card"]["header"]["title"]["content"] == MESSAGE.title
    assert "宝力根街道" in got.body["card"]["elements"][0]["content"]
    with pytest.raises(notify.Undeliverable, match="19021"):
        FeishuBot(cfg(notice_settings)).send(Address("2f8b5c1e-hook", "another"), MESSAGE)


def test_wecom_robot_posts_markdown_and_an_unknown_key_is_undeliverable(peer: Peer, notice_settings: Settings) -> None:
    peer.wecom.add("693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa")
    WecomRobot(cfg(notice_settings)).send(Address("693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"), MESSAGE)
    [got] = peer.of("wecom")
    assert MESSAGE.title in got.body["markdown"]["content"]
    with pytest.raises(notify.Undeliverable, match="93000"):
        WecomRobot(cfg(notice_settings)).send(Address("robot-removed"), MESSAGE)


def test_aliyun_sms_is_signed_as_aliyun_documents_with_template_and_params(peer: Peer,
                                                                           notice_settings: Settings) -> None:
    Sms(AliyunSms(cfg(notice_settings))).send(Address("13800138000"), MESSAGE)
    [got] = peer.of("sms")
    assert got.target == "13800138000"
    assert got.body == {"sign_name": "锡林浩特广电", "template": "SMS_465390012", "params": dict(MESSAGE.params or {})}


def test_aliyun_sms_refusals(peer: Peer, notice_settings: Settings) -> None:
    with pytest.raises(notify.Undeliverable, match="MOBILE_NUMBER_ILLEGAL"):
        Sms(AliyunSms(cfg(notice_settings))).send(Address("10086"), MESSAGE)
    wrong = cfg(notice_settings).model_copy(update={"sms_access_key_secret": "guessed"})
    with pytest.raises(notify.Undeliverable, match="400"):
        Sms(AliyunSms(wrong)).send(Address("13800138000"), MESSAGE)
    assert peer.refused == [("sms", "signature")] and not peer.of("sms")


def test_a_provider_outage_is_retried_not_given_up(peer: Peer, notice_settings: Settings) -> None:
    peer.dingtalk["d0a1b2c3d4e5f6a7"] = None
    peer.fail_next = 1
    with pytest.raises(Exception) as raised:
        DingtalkRobot(cfg(notice_settings)).send(Address("d0a1b2c3d4e5f6a7"), MESSAGE)
    assert not isinstance(raised.value, notify.Undeliverable)
    DingtalkRobot(cfg(notice_settings)).send(Address("d0a1b2c3d4e5f6a7"), MESSAGE)
    assert len(peer.of("dingtalk")) == 1


def test_email_goes_as_text_and_html_through_smtp(mailbox: tuple[Mailbox, int], notice_settings: Settings) -> None:
    Email(cfg(notice_settings)).send(Address("manager.xl@xl.example.com"), MESSAGE)
    [(rcpts, mail)] = mailbox[0].mails
    assert rcpts == ["manager.xl@xl.example.com"]
    assert mail["Subject"] == MESSAGE.title and mail["From"] == "fieldpool@xl.example.com"
    parts: dict[str, Mail] = {part.get_content_type(): part for part in mail.walk()}
    text = parts["text/plain"].get_payload(decode=True).decode()
    html = parts["text/html"].get_payload(decode=True).decode()
    assert "XL-20261205-0042" in text and "http://fieldpool.test/console?ticket=42" in text and "**" not in text
    assert '<a href="http://fieldpool.test/console?ticket=42">在控制台查看</a>' in html


def test_email_to_a_refused_mailbox_is_undeliverable(mailbox: tuple[Mailbox, int], notice_settings: Settings) -> None:
    with pytest.raises(notify.Undeliverable, match="refused"):
        Email(cfg(notice_settings)).send(Address(REFUSED_MAILBOX), MESSAGE)
    assert mailbox[0].mails == []
