"""The simulation's own database and Redis, emptied and seeded from the fixtures before each policy's day."""

import os
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from dispatch.kernel.db import get_database
from dispatch.kernel.queues import queue
from dispatch.kernel.settings import get_settings
from dispatch.migrations import roles, runner
from dispatch.seed import seed_demo

# Nobody logs in to a simulated city; the demo users still need one.
PASSWORD = "simulation-only"


@dataclass(frozen=True)
class Place:
    """Where a simulation runs: a database it may drop (as its owner), the app's role on it, and a Redis."""

    owner_url: str
    redis_url: str

    @property
    def app_url(self) -> str:
        return make_url(self.owner_url).set(username="fieldpool_app", password="fieldpool_app") \
            .render_as_string(hide_password=False)


def _admin(owner_url: str) -> Engine:
    return create_engine(make_url(owner_url).set(database="postgres"), isolation_level="AUTOCOMMIT",
                         poolclass=NullPool)


def _city_url(place: Place) -> str:
    url = make_url(place.owner_url)
    return url.set(database=f"{url.database}_city").render_as_string(hide_password=False)


def prepare_city(place: Place, fixtures: Path) -> None:
    """The seeded city every simulated day starts from, kept as a template database beside the run's: migrating
    and seeding take a minute, a copy of the template a second. Idempotent: a kept template is only brought to
    the newest migration and given what the fixtures add."""
    city_url = _city_url(place)
    name = make_url(city_url).database
    admin = _admin(place.owner_url)
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    runner.upgrade(city_url)
    app_url = make_url(city_url).set(username="fieldpool_app", password="fieldpool_app")
    roles.provision(city_url, app_url.render_as_string(hide_password=False))
    app = create_engine(app_url, poolclass=NullPool)
    with Session(app) as session, session.begin():
        seed_demo(session, password=PASSWORD, fixtures=fixtures)
    app.dispose()


def fresh_day(place: Place) -> None:
    """The run's database as a copy of the seeded city, and an empty Redis: each policy meets the same city."""
    name, city = make_url(place.owner_url).database, make_url(_city_url(place)).database
    admin = _admin(place.owner_url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{city}"'))
        # A simulated day needs no durability, and waiting for each commit's flush on a shared disk was most of
        # its time (the process used 9% of a core).
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    admin.dispose()
    Redis.from_url(place.redis_url).flushdb()


def point_process_at(place: Place) -> None:
    """What reads the process settings (the outbox's drain job, queues) goes to the simulation's database and
    Redis too, never to the deployment's."""
    os.environ.update(DATABASE_URL=place.app_url, MIGRATION_DATABASE_URL=place.owner_url, REDIS_URL=place.redis_url,
                      REDIS_QUEUE_URL=place.redis_url)
    if get_database.cache_info().currsize:
        get_database().dispose()
    get_settings.cache_clear()
    queue.cache_clear()
    get_database.cache_clear()
