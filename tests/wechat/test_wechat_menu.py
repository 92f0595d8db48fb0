"""`fieldpool wechat menu` publishes the menu file to the account, its links pointing at this deployment."""

from pathlib import Path

from redis import Redis
from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.kernel.settings import Settings
from tests.conftest import ROOT
from tests.wechat.peer import WechatPeer
from tests.wechat.wire import PUBLIC


def test_the_menu_file_is_published_with_links_to_this_deployment(wx_settings: Settings, peer: WechatPeer,
                                                                  redis: Redis) -> None:
    done = CliRunner().invoke(app, ["wechat", "menu", "--file", str(ROOT / "fixtures/wechat_menu.json")])
    assert done.exit_code == 0, done.output
    [menu] = peer.state.menus
    report = menu["button"][0]
    assert report["name"] == "报障" and report["type"] == "view"
    assert report["url"] == f"{PUBLIC}/wechat/oauth/start?next=%2Fm%2Freport"
    assert menu["button"][1]["key"] == "PROGRESS"


def test_a_menu_file_that_is_not_a_menu_is_refused_before_calling_wechat(wx_settings: Settings, peer: WechatPeer,
                                                                         tmp_path: Path) -> None:
    bad = tmp_path / "menu.json"
    bad.write_text('{"buttons": []}', encoding="utf-8")
    done = CliRunner().invoke(app, ["wechat", "menu", "--file", str(bad)])
    assert done.exit_code == 2 and "button" in done.output
    assert peer.state.menus == [] and peer.seen("/cgi-bin/stable_token") == []
