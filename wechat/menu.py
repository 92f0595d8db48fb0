"""The account's custom menu, kept in a config file and published with `fieldpool wechat menu`."""

import json
from pathlib import Path
from typing import Any

from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.settings import WechatSettings
from wechat.client import AccountClient

PUBLIC_BASE = "{public_base_url}"
MAX_BUTTONS = 3  # WeChat's limit for the top row (five below each)


def load(path: Path, cfg: WechatSettings) -> dict[str, Any]:
    """The menu in `path`, with `{public_base_url}` in its links filled in from the settings.

    Raises:
        InvalidInput: not JSON, or not a WeChat menu (one to three buttons).
    """
    text = path.read_text(encoding="utf-8").replace(PUBLIC_BASE, cfg.public_base_url.rstrip("/"))
    try:
        menu = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("file", f"{path} is not JSON: {exc}") from None
    buttons = menu.get("button") if isinstance(menu, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise InvalidInput("file", f"{path} needs a 'button' list of 1 to {MAX_BUTTONS} entries")
    return menu


def publish(client: AccountClient, menu: dict[str, Any]) -> None:
    """Replace the account's menu (WeChat shows it to followers within minutes)."""
    client.call(lambda: client.menu.create(menu))
