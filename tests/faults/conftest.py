"""A private PostgreSQL and Redis that the fault tests may kill and restart, and the city served on them.

The shared PostgreSQL and Redis serve every other test run on the machine: these tests never touch
them. Each module gets its own cluster (initdb into a temporary directory, run as the `postgres`
user when the tests run as root: initdb refuses root) and its own redis-server, both on free ports,
migrated and seeded with the CLI an operator uses, then `fieldpool serve` and `fieldpool worker`.
`scripts/ensure-services.sh` installs the binaries (postgresql, postgresql-*-postgis-3, redis-server).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from dispatch.kernel.queues import periodic_outcomes
from tests.concurrency.storms import FIELDPOOL, ApiServer, PrivateRedis, free_port, wait_until


def _pg_bin() -> Path:
    """FIELDPOOL_PG_BIN, else the newest Debian PostgreSQL's bin (the one ensure-services installs PostGIS for)."""
    if "FIELDPOOL_PG_BIN" in os.environ:
        return Path(os.environ["FIELDPOOL_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
SECRET = "fault-secret-key-0123456789-0123456789-abcdef"
DEMO_PASSWORD = "demo-fault-pw"
APP_ROLE = "fieldpool_app:fieldpool_app"
# Every periodic job runs 20 times as often (the ring sweep every 0.75 s, the outbox drain every 0.25 s), and a
# ring widens every 2 s: what the worker does after a fault shows within seconds, not minutes.
WORKER_ENV = {"PERIODIC_SCALE": "0.05", "OFFER__STEP_S": "2"}


def _require(binary: Path | str) -> str:
    found = shutil.which(str(binary))
    if found is None:
        pytest.fail(f"{binary} is missing: the fault tests run a PostgreSQL and a Redis of their own "
                    "(install them with scripts/ensure-services.sh, or point FIELDPOOL_PG_BIN at PostgreSQL's bin)")
    return found


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this module's own, which it may stop hard and start again."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "fieldpool", user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, *args: str) -> None:
        command = [_require(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = [_require("runuser"), "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 0, f"{' '.join(args)} failed: {done.stdout}{done.stderr}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._as_owner("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                       "--no-sync")

    def start(self) -> None:
        # fsync off: a test cluster whose machine never crashes; a stop -m immediate still keeps every commit.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200")
        self._as_owner("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "-t", "60",
                       "start")

    def stop(self) -> None:
        """Stop at once, as a crash does: open connections are cut, nothing is shut down cleanly."""
        self._as_owner("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="fieldpool-faults-")))
    try:
        server.init()
        server.start()
        owner = create_engine(server.url("postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with owner.connect() as conn:
            conn.execute(text("CREATE DATABASE fieldpool"))
        owner.dispose()
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[PrivateRedis]:
    _require("redis-server")
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


@dataclass
class City:
    """The demo city on the private services: URLs, an owner's engine, and the CLI's environment."""

    postgres: PrivatePostgres
    redis: PrivateRedis
    root: Path

    @property
    def app_url(self) -> str:
        return self.postgres.url(user=APP_ROLE)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.app_url, "MIGRATION_DATABASE_URL": self.postgres.url(),
                "REDIS_URL": self.redis.url, "REDIS_QUEUE_URL": self.redis.url, "SECRET_KEY": SECRET,
                "FIELDPOOL_DEMO_PASSWORD": DEMO_PASSWORD, "LOG_LEVEL": "WARNING", "LOG_JSON": "false",
                **WORKER_ENV}

    def fieldpool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FIELDPOOL, *args], env=self.env, capture_output=True, text=True, timeout=120,
                              check=False)


@pytest.fixture(scope="module")
def city(private_postgres: PrivatePostgres, fault_redis: PrivateRedis,
         request: pytest.FixtureRequest) -> Iterator[City]:
    # Logs outside pytest's base directory (other runs on the machine prune that), kept when a test failed.
    city = City(private_postgres, fault_redis, Path(tempfile.mkdtemp(prefix="fieldpool-faults-logs-")))
    failed_before = request.session.testsfailed
    for step in (("db", "upgrade"), ("seed", "demo")):
        done = city.fieldpool(*step)
        assert done.returncode == 0, done.stdout + done.stderr
    yield city
    if request.session.testsfailed == failed_before:
        shutil.rmtree(city.root, ignore_errors=True)


@pytest.fixture(scope="module")
def owner(city: City) -> Iterator[Engine]:
    """Reads the invariants as the tables' owner sees them (NullPool: PostgreSQL restarts under it)."""
    engine = create_engine(city.postgres.url(), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def api(city: City) -> Iterator[ApiServer]:
    server = ApiServer(redis_url=city.redis.url, secret=SECRET, log=city.root / "api.log", workers=2,
                       database_url=city.app_url, env={**WORKER_ENV, "DB_POOL_TIMEOUT_S": "3"})
    server.start()
    yield server
    server.stop()


@dataclass
class Worker:
    """`fieldpool worker` as a supervisor runs it: killed with SIGKILL, started again."""

    city: City
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([FIELDPOOL, "worker"], env=self.city.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the worker and the job it has forked, if any, as a supervisor stopping the service's cgroup
        does: no handler runs, nothing is cleaned up. rq puts the job's process in a group of its own."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for group in (pid, *map(int, children)):
            with contextlib.suppress(ProcessLookupError):  # a job that ended meanwhile
                os.killpg(group, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def worker(city: City, api: ApiServer) -> Iterator[Worker]:
    worker = Worker(city, city.root / "worker.log")
    worker.start()
    with Redis.from_url(city.redis.url) as queues:
        wait_until(lambda: any(o.last_success_at for o in periodic_outcomes(queues)), what="the worker to start",
                   timeout_s=60)
    yield worker
    worker.stop()
