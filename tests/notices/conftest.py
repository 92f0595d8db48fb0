"""Staff notices' fixtures: the providers' loopback peer, an SMTP server in-process, settings pointing at them."""

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message as Mail
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from redis import Redis
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.kernel.settings import NoticeSettings, Settings
from dispatch.notices import delivery
from dispatch.tickets.models import EscalationStep
from geo.models import Region, RegionKind
from tests.notices.peers import Peer

SMS_KEY_ID, SMS_KEY_SECRET = "LTAI5tTestKeyId", "testSecretForSigning0123456789"
REFUSED_MAILBOX = "nobody@example.com"


@dataclass
class Mailbox:
    """What the SMTP server accepted: one parsed message per recipient list."""

    mails: list[tuple[list[str], Mail]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address == REFUSED_MAILBOX:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def peer() -> Iterator[Peer]:
    with Peer(sms_keys={SMS_KEY_ID: SMS_KEY_SECRET}) as running:
        yield running


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, loop=asyncio.new_event_loop())
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
        controller.loop.close()


@pytest.fixture
def notice_settings(settings: Settings, peer: Peer, mailbox: tuple[Mailbox, int]) -> Settings:
    cfg = NoticeSettings(wecom_base_url=peer.url, dingtalk_base_url=peer.url, feishu_base_url=peer.url,
                         sms_base_url=peer.url, sms_access_key_id=SMS_KEY_ID, sms_access_key_secret=SMS_KEY_SECRET,
                         sms_sign_name="锡林浩特广电", sms_template_code="SMS_465390012", smtp_host="127.0.0.1",
                         smtp_port=mailbox[1], mail_from="fieldpool@xl.example.com",
                         console_url="http://fieldpool.test/console")
    return settings.model_copy(update={"notices": cfg})


@pytest.fixture
def channels(notice_settings: Settings, redis: Redis) -> Iterator[Settings]:
    """The notice channels registered in this process (the outbox drains here) with the peers' URLs."""
    delivery.register(notice_settings, redis)
    yield notice_settings
    delivery.register(notice_settings.model_copy(update={"notices": NoticeSettings()}), redis)


@pytest.fixture
def grid_chain_cleared(committed_db: Engine) -> Iterator[None]:
    """Chains set on demo regions by a committed test are removed afterwards (the demo's own are on branches)."""
    yield
    with Session(committed_db) as session, session.begin():
        grids = select(Region.id).where(Region.kind == RegionKind.GRID)
        session.execute(delete(EscalationStep).where(EscalationStep.region_id.in_(grids)))
