"""The pages are served by the app itself: HTML, their ES modules and the optional tile setting."""

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from dispatch.accounts.service import subscriber_by_phone, token_for
from dispatch.app import create_app
from dispatch.kernel.settings import Settings


def test_each_page_and_its_module_are_served_in_chinese(client: TestClient) -> None:
    for path, module in (("/m/tech", "/static/tech/tech.js"), ("/m/report", "/static/report/report.js"),
                         ("/console", "/static/console/console.js")):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<html lang="zh-CN">' in page.text and module in page.text
        script = client.get(module)
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/static/common/api.js").status_code == 200
    assert client.get("/static/common/nope.js").status_code == 404


def test_pages_work_offline_unless_a_tile_url_is_set(settings: Settings) -> None:
    with TestClient(create_app(settings)) as offline:
        assert 'name="fieldpool-tile-url" content=""' in offline.get("/console").text
        assert 'name="fieldpool-tile-crs" content="wgs84"' in offline.get("/console").text
    tiled = settings.model_copy(update={"map_tile_url": 'http://tiles.lan/{z}/{x}/{y}.png?"x', "map_tile_crs": "gcj02"})
    with TestClient(create_app(tiled)) as online:
        # Escaped: a setting must not be able to break out of the attribute.
        assert 'content="http://tiles.lan/{z}/{x}/{y}.png?&quot;x"' in online.get("/m/tech").text
        for page in ("/console", "/m/report"):  # the pages with a map shift points onto GCJ-02 tiles
            assert 'name="fieldpool-tile-crs" content="gcj02"' in online.get(page).text


def test_a_subscriber_sees_the_service_areas_grids_to_place_a_pin(client: TestClient, db: Session,
                                                                  settings: Settings) -> None:
    subscriber_id = subscriber_by_phone(db, phone="13800005678", name="张三")
    token = token_for(f"subscriber:{subscriber_id}", secret=settings.secret_key, ttl_min=5)
    regions = client.get("/api/v1/regions", headers={"Authorization": f"Bearer {token}"}).json()
    assert len([r for r in regions if r["kind"] == "grid"]) == 11  # Xilinhot's 8 and Erenhot's 3
