"""`make bench`: HTTP load at the door against a live server and worker, with its floor, and the presence
write-through; then nearest, workload, grabs, webhooks, lists, the dispatch simulation's headline; last the
soak (`BENCH_SOAK_S`, 600 s).

`python -m tests.bench door nearest workload grabs webhooks lists simulate soak` runs only the tables named. Each
starts from a freshly seeded bench database and a flushed bench Redis.
"""

import os
import sys

from redis import Redis
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

from dispatch.migrations import runner
from dispatch.seed import seed_demo
from tests.bench import door, grabs, lists, nearest, presence, simulate, webhooks, workload

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool_bench")
PASSWORD = "bench"
# Both are dropped or flushed: on a shared machine give each bench run its own (see README).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TRACK_POINTS = 20_000


def _prepare_database() -> None:
    name = make_url(BENCH_URL).database  # BENCH_DATABASE_URL may name another, e.g. to bench alongside someone
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    runner.upgrade(BENCH_URL)
    engine = create_engine(BENCH_URL)
    with Session(engine) as session, session.begin():
        seed_demo(session, password=PASSWORD)
    engine.dispose()
    Redis.from_url(REDIS_URL).flushdb()  # the pool, the live index and the queues of a past run


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _door() -> str:
    report = door.table(BENCH_URL, REDIS_URL)
    # The door's technicians are still on duty in the bench Redis: their branch's track is flushed as the worker does.
    points, seconds = presence.write_through(BENCH_URL, REDIS_URL, points=TRACK_POINTS)
    return (f"{report}\nwrite-through (the worker's flush_track, COPY batches of {presence.batch_size()}): "
            f"{points} sampled points in {seconds:.2f} s = {points / seconds:,.0f} points/s\n")


TABLES = {"door": _door, "nearest": lambda: nearest.main(_libpq(BENCH_URL)),
          "workload": lambda: workload.main(BENCH_URL), "grabs": lambda: grabs.main(BENCH_URL, REDIS_URL),
          "webhooks": lambda: webhooks.main(BENCH_URL, REDIS_URL), "lists": lambda: lists.main(BENCH_URL),
          "simulate": lambda: simulate.main(BENCH_URL, REDIS_URL),
          "soak": lambda: door.soak(BENCH_URL, REDIS_URL)}


def main(only: list[str]) -> None:
    """Every table in turn, or only those named (`python -m tests.bench door soak`)."""
    unknown = set(only) - set(TABLES)
    if unknown:
        sys.exit(f"unknown table(s) {', '.join(sorted(unknown))}: choose from {', '.join(TABLES)}")
    for name in only or TABLES:
        _prepare_database()
        print(TABLES[name](), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
