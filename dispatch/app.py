"""The composition root: the one place routers, handlers and seams are wired."""

import asyncio
import html
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from dispatch import ops
from dispatch.accounts import router as accounts
from dispatch.accounts.service import TokenAuthenticator
from dispatch.audit import router as audit
from dispatch.kernel import problems
from dispatch.kernel.db import Database
from dispatch.kernel.hardening import BodyLimit, SecurityHeaders, docs_policy, page_policy
from dispatch.kernel.logging import configure as configure_logging
from dispatch.kernel.middleware import RequestContext
from dispatch.kernel.queues import queue
from dispatch.kernel.redis import connect, connect_async
from dispatch.kernel.settings import Settings, get_settings
from dispatch.notices import delivery as notice_delivery
from dispatch.notices import router as notices
from dispatch.tickets import feed, notify, stream
from dispatch.tickets import router as tickets
from dispatch.webhooks import channel as webhook_channel
from dispatch.webhooks import router as webhooks
from geo import router as geo
from technicians import router as technicians
from wechat import channel as wechat_channel
from wechat import router as wechat
from workload import router as workload


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Fieldpool API app; served with `uvicorn --factory dispatch.app:create_app`."""
    settings = settings or get_settings()
    if (unsafe := settings.unsafe_secret_key()) is not None:
        raise RuntimeError(unsafe)
    configure_logging(json=settings.log_json, level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # As many threads for sync endpoints as pooled connections: each can hold one, none waits for one.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size
        app.state.db = Database(settings)
        app.state.redis = connect(settings.redis_url)
        app.state.redis_async = connect_async(settings.redis_url)
        # Set on shutdown: SSE streams still open end (uvicorn waits for open
        # connections before the lifespan ends: `serve` bounds that wait).
        app.state.stopping = asyncio.Event()
        feed.register(app.state.redis)  # the notifier's "feed" channel
        wechat_channel.register(settings.wechat, app.state.redis)  # template messages, when configured
        notice_delivery.register(settings, app.state.redis)  # staff notices: robots, SMS, mail, WeChat
        webhook_channel.register()  # feed events become webhook deliveries
        drain_waker = notify.DrainWaker(queue()).start()  # commits wake it: no enqueue on the request path
        try:
            yield
        finally:
            drain_waker.stop()
            app.state.stopping.set()
            await app.state.redis_async.aclose()
            app.state.redis.close()
            app.state.db.dispose()

    # No /redoc: its page needs fonts and scripts from other sites; /docs has the same and lets you try.
    app = FastAPI(title="Fieldpool", version="1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Field dispatch and order grabbing (抢单). Errors are RFC 9457 problem JSON.")
    app.state.settings = settings
    app.state.authenticate = TokenAuthenticator(settings.secret_key)
    problems.install(app)
    # Outermost last: the headers go on every answer, a 413 and a 500 included, and every answer has a request id.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       larger=((ATTACHMENT_UPLOAD, settings.max_media_bytes + MULTIPART_OVERHEAD),))
    app.add_middleware(RequestContext)
    app.add_middleware(SecurityHeaders, page_csp=page_policy(settings.map_tile_url))
    # Routes are matched in order: the phones' hot paths (pings, grabs) come early. tickets before
    # technicians: /technicians/nearest must win over /technicians/{technician_id}.
    for router in (ops.router, accounts.router, technicians.me_router, tickets.router, geo.router,
                   technicians.router, stream.router, wechat.router, workload.router, audit.router, notices.router,
                   webhooks.router):
        app.include_router(router)
    _mount_pages(app, tile_url=settings.map_tile_url, tile_crs=settings.map_tile_crs)
    _mount_docs(app)
    return app


ATTACHMENT_UPLOAD = r"/api/v1/tickets/\d+/attachments"
# An upload's multipart framing around the file itself (boundaries, part headers).
MULTIPART_OVERHEAD = 64 * 1024


def _mount_docs(app: FastAPI) -> None:
    page = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="Fieldpool API").body
    headers = {"Content-Security-Policy": docs_policy(bytes(page).decode())}
    app.add_api_route("/docs", lambda: HTMLResponse(page, headers=headers), methods=["GET"], include_in_schema=False)


# The pages people use: plain HTML, CSS and ES modules (no build step), each
# kept by the domain whose users see it; they call the same /api/v1 as anyone.
PAGES = {
    "/m/tech": ("tech", Path(str(files("technicians") / "web"))),
    "/m/report": ("report", Path(str(files("wechat") / "web"))),
    "/console": ("console", Path(str(files("dispatch") / "web" / "console"))),
}
COMMON_ASSETS = Path(str(files("dispatch") / "web" / "common"))
# Third-party libraries (map, charts), installed from npm by scripts/build-web.sh.
VENDOR_ASSETS = Path(str(files("dispatch") / "web" / "vendor"))


def _mount_pages(app: FastAPI, *, tile_url: str | None, tile_crs: str) -> None:
    app.mount("/static/common", StaticFiles(directory=COMMON_ASSETS), name="static-common")
    app.mount("/static/vendor", StaticFiles(directory=VENDOR_ASSETS), name="static-vendor")
    for path, (name, folder) in PAGES.items():
        app.mount(f"/static/{name}", StaticFiles(directory=folder), name=f"static-{name}")
        # Read once: the page is the same for everyone but for the optional tile settings.
        page = (folder / "index.html").read_text(encoding="utf-8").replace(
            "{{tile_url}}", html.escape(tile_url or "", quote=True)).replace("{{tile_crs}}", tile_crs)
        app.add_api_route(path, _page_route(page), methods=["GET"], response_class=HTMLResponse,
                          include_in_schema=False)


def _page_route(page: str) -> Callable[[], HTMLResponse]:
    def serve_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    return serve_page
