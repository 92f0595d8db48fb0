"""The composition root: the one place routers, handlers and seams are wired."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dispatch import ops
from dispatch.accounts import router as accounts
from dispatch.accounts.service import TokenAuthenticator
from dispatch.kernel import problems
from dispatch.kernel.db import Database
from dispatch.kernel.logging import configure as configure_logging
from dispatch.kernel.middleware import RequestContext
from dispatch.kernel.redis import connect, connect_async
from dispatch.kernel.settings import Settings, get_settings
from dispatch.tickets import feed, stream
from dispatch.tickets import router as tickets
from geo import router as geo
from technicians import router as technicians
from wechat import channel as wechat_channel
from wechat import router as wechat
from workload import router as workload


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Fieldpool API app; served with `uvicorn --factory dispatch.app:create_app`."""
    settings = settings or get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(settings)
        app.state.redis = connect(settings.redis_url)
        app.state.redis_async = connect_async(settings.redis_url)
        # Set on shutdown: SSE streams still open end (uvicorn waits for open
        # connections before the lifespan ends: `serve` bounds that wait).
        app.state.stopping = asyncio.Event()
        feed.register(app.state.redis)  # the notifier's "feed" channel
        wechat_channel.register(settings.wechat, app.state.redis)  # template messages, when configured
        try:
            yield
        finally:
            app.state.stopping.set()
            await app.state.redis_async.aclose()
            app.state.redis.close()
            app.state.db.dispose()

    app = FastAPI(title="Fieldpool", version="1.0", lifespan=lifespan,
                  description="Field dispatch and order grabbing (抢单). Errors are RFC 9457 problem JSON.")
    app.state.settings = settings
    app.state.authenticate = TokenAuthenticator(settings.secret_key)
    problems.install(app)
    app.add_middleware(RequestContext)
    # tickets before technicians: /technicians/nearest must win over /technicians/{technician_id}.
    for router in (ops.router, accounts.router, geo.router, tickets.router, technicians.router,
                   technicians.me_router, stream.router, wechat.router, workload.router):
        app.include_router(router)
    return app
