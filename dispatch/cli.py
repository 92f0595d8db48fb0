"""The `fieldpool` command: serve, worker, db, seed, users, pool, wechat, export."""

import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import structlog
import typer
from redis import Redis
from redis.exceptions import RedisError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from sqlalchemy.engine import make_url

from dispatch import serving
from dispatch.accounts.service import create_user
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.db import session_scope
from dispatch.kernel.errors import DomainError, InvalidInput
from dispatch.kernel.logging import configure as configure_logging
from dispatch.kernel.queues import enqueue_tick, reap_abandoned, requeue_stranded, start_ticker, tick_died
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import get_settings
from dispatch.migrations import roles, runner
from dispatch.notices import delivery as notice_delivery
from dispatch.notices import jobs as notice_jobs
from dispatch.seed import seed_demo
from dispatch.tickets import feed, mirror, outbox
from dispatch.webhooks import channel as webhook_channel
from dispatch.webhooks import jobs as webhook_jobs
from simulation import charts, demand, scorecard
from simulation import database as sim_database
from simulation import run as sim_run
from simulation.config import get_simulation_settings
from simulation.policies import POLICIES, PolicyName
from technicians import presence, replica
from wechat import channel as wechat_channel
from wechat import menu
from wechat.client import AccountClient
from workload import service as workload
from workload.export import ExportFormat

app = typer.Typer(help="Fieldpool: field dispatch and order grabbing.", no_args_is_help=True)
db = typer.Typer(help="Database schema.", no_args_is_help=True)
seed = typer.Typer(help="Demo data.", no_args_is_help=True)
users = typer.Typer(help="Log-ins.", no_args_is_help=True)
pool_cli = typer.Typer(help="The grab pool in Redis.", no_args_is_help=True)
wechat = typer.Typer(help="The WeChat official account.", no_args_is_help=True)
export = typer.Typer(help="Reports to files.", no_args_is_help=True)
app.add_typer(db, name="db")
app.add_typer(seed, name="seed")
app.add_typer(users, name="users")
app.add_typer(pool_cli, name="pool")
app.add_typer(wechat, name="wechat")
app.add_typer(export, name="export")
# Whoever runs the CLI on the server already has the database: they read as HQ.
OPERATOR = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="cli")

log = structlog.get_logger()
# `fieldpool simulate` drops and seeds its own database and flushes its own Redis, never the deployment's.
SIMULATION_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool_simulation"
SIMULATION_REDIS_URL = "redis://127.0.0.1:6379/13"


def _cores() -> int:
    # The cores this process may run on (a container's or taskset's share), not the machine's.
    return len(os.sched_getaffinity(0))


@app.command()
def serve(host: str = "127.0.0.1", port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
          workers: Annotated[int | None, typer.Option(
              envvar="WEB_CONCURRENCY", help="API processes; default one per core")] = None,
          reload: bool = False,
          keep_alive: Annotated[int, typer.Option(help="seconds an idle connection stays open")] = 75) -> None:
    """Run the HTTP API, one process per core (WEB_CONCURRENCY or --workers to choose)."""
    unsafe = get_settings().unsafe_secret_key()
    if unsafe is not None:
        typer.echo(f"not serving: {unsafe}", err=True)
        raise typer.Exit(2)
    # Each process keeps its own copy of the live index, following the change log: any number serve alike.
    processes = 1 if reload else workers or _cores()
    metrics_dir = None
    if processes > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several processes answer /metrics in turn: each writes its figures where every one can sum them.
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fieldpool-metrics-")
    # SSE streams never end by themselves: without a bound, a shutdown would
    # wait for every connected phone to go away. Idle connections outlive a
    # proxy's (nginx keeps them 60-75 s): a server closing first makes a reused
    # connection fail with no answer.
    try:
        serving.serve(host=host, port=port, processes=processes, reload=reload, proxy_headers=True,
                      access_log=False, timeout_graceful_shutdown=10, timeout_keep_alive=keep_alive)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class CopyingWorker(Worker):
    """rq's forking worker, whose jobs start from this process's copies of the open sets brought up to date just
    before each fork.

    The copies' follower keeps them current, but once Redis was flushed or restarted only a search reloads them;
    the worker itself never searches, so every job would copy whole branches again (half a second for 15,000
    open technicians) until a restart.
    """

    def __init__(self, queues: list[Queue], *, connection: Redis, live_index: Redis, branch_ids: list[int]) -> None:
        super().__init__(queues, connection=connection, log_job_description=False, work_horse_killed_handler=tick_died)
        self.live_index, self.branch_ids = live_index, branch_ids
        self.stop_asked = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            replica.preload(self.live_index, self.branch_ids)  # nothing to do while the follower keeps up
        except RedisError as exc:
            log.warning("open_sets_not_refreshed", error=f"{type(exc).__name__}: {exc}")  # the job catches up
        super().execute_job(job, queue)


@app.command()
def worker(queues: Annotated[list[str] | None, typer.Argument()] = None, burst: bool = False,
           drain_every: Annotated[float, typer.Option(help="seconds between outbox drains")] = outbox.DRAIN_EVERY_S,
           ) -> None:
    """Run a background worker (rq) with the scheduler and the periodic jobs: outbox drain, ring sweep,
    track write-through, live-index rebuild, grab-pool repair and webhook retries."""
    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    connection = Redis.from_url(settings.queue_url)
    names = queues or ["default"]
    feed.register(connect(settings.redis_url))  # the notifier's channels, as in create_app
    wechat_channel.register(settings.wechat, connect(settings.redis_url))
    notice_delivery.register(settings, connect(settings.redis_url))
    webhook_channel.register()
    with session_scope() as session:
        branches = presence.branch_ids(session)
    # rq runs each job in a forked process: the rings' nearest searches start from these copies.
    live_index = connect(settings.redis_url)
    replica.preload(live_index, branches)
    stop_ticks = None
    if "default" in names:
        # Its own connection: the ticker thread must not share one with the work loop.
        ticker_queue = Queue("default", connection=Redis.from_url(settings.queue_url, socket_timeout=5.0,
                                                                  socket_connect_timeout=5.0))
        periodic = [outbox.drain_tick(drain_every * settings.periodic_scale), *notice_jobs.periodic(settings),
                    webhook_jobs.send_tick(settings)]
        if burst:
            for job in periodic:
                enqueue_tick(ticker_queue, job.func, job_id=job.job_id, timeout_s=job.timeout_s, reports=job.reports)
        else:
            stop_ticks = start_ticker(ticker_queue, periodic)
    # rq says "started / completed / result discarded" at INFO for every run: on an idle city that
    # was 150 lines a minute of ticks. Jobs log what they did themselves; rq keeps its warnings and errors.
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    try:
        while True:
            try:
                for job_id in reap_abandoned(connection, names):
                    log.warning("abandoned_job_failed", job_id=job_id, reason="its worker died mid-run")
                for job_id in requeue_stranded(connection, names):
                    log.warning("stranded_job_requeued", job_id=job_id, reason="its worker died as it took the job")
            except RedisError as exc:  # rq reaps them itself in time
                log.warning("abandoned_jobs_not_reaped", error=f"{type(exc).__name__}: {exc}")
            loop = CopyingWorker([Queue(name, connection=connection) for name in names], connection=connection,
                                 live_index=live_index, branch_ids=branches)
            try:
                loop.work(with_scheduler=True, burst=burst, logging_level=rq_level)
            except RedisError as exc:  # its teardown, with Redis gone
                log.warning("worker_teardown_failed", error=f"{type(exc).__name__}: {exc}")
            if burst or loop.stop_asked:
                break
            # rq's loop ends on any error it does not expect, a Redis restart among them: the worker would exit
            # and every periodic job stop with it. A new loop takes over once Redis answers.
            log.error("worker_loop_ended", restart="once Redis answers")
            if not _redis_answers(connection):
                break
    finally:
        if stop_ticks is not None:
            stop_ticks.set()


def _redis_answers(connection: Redis) -> bool:
    """Wait for the queues' Redis; False when the worker was asked to stop meanwhile."""
    while True:
        try:
            connection.ping()
            return True
        except RedisError:
            pass
        except StopRequested:  # rq's signal handlers are still in place
            return False
        try:
            time.sleep(1.0)
        except StopRequested:
            return False


@db.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations up to REVISION as the owner (MIGRATION_DATABASE_URL), then grant the app's role
    (DATABASE_URL's user) what it needs, creating it when missing."""
    settings = get_settings()
    runner.upgrade(settings.owner_database_url, revision)
    typer.echo(f"database at {revision}")
    try:
        role = roles.provision(settings.owner_database_url, settings.database_url)
    except roles.UnfitRole as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if role is not None:
        typer.echo(f"role {role} may read and write the app's tables, and only add to ticket_event")


@db.command("check")
def db_check() -> None:
    """Fail when the models and the migrations have drifted apart."""
    runner.check(get_settings().owner_database_url)
    typer.echo("models and migrations agree")


@seed.command("demo")
def seed_demo_command() -> None:
    """Load the demo city (Xilinhot and Erenhot); idempotent."""
    settings = get_settings()
    with session_scope() as session:
        counts = seed_demo(session, password=settings.demo_password)
    typer.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))


@users.command("create")
def users_create(username: str, role: Role,
                 password: Annotated[str, typer.Option(prompt=True, hide_input=True, envvar="FIELDPOOL_PASSWORD")],
                 region: Annotated[list[int] | None, typer.Option(help="region id; repeat for several")] = None,
                 name: str | None = None) -> None:
    """Create a log-in (the first admin of a fresh deployment, for instance)."""
    with session_scope() as session:
        user = create_user(session, username=username, password=password, role=role, name=name,
                           region_ids=region or [], actor=OPERATOR)
        typer.echo(f"created {user.role} {user.username} (id {user.id})")


@pool_cli.command("rebuild")
def pool_rebuild() -> None:
    """Rebuild the grab pool of every branch from PostgreSQL."""
    settings = get_settings()
    with session_scope() as session:
        rebuilt = mirror.rebuild(session, connect(settings.redis_url))
    typer.echo(", ".join(f"branch {branch}: {count} tickets" for branch, count in rebuilt.items()) or "no branches")


@pool_cli.command("check")
def pool_check(settle: Annotated[float, typer.Option(
        help="seconds to wait before looking again: only drift seen both times, unchanged, is reported")] = 1.0,
               ) -> None:
    """Report every lasting difference between the grab pool and PostgreSQL; exit 1 if there is any."""
    settings = get_settings()
    with session_scope() as session:
        drift = mirror.lasting_drift(session, connect(settings.redis_url), settle=lambda: time.sleep(settle))
    for problem in drift:
        typer.echo(str(problem))
    if drift:
        typer.echo(f"{len(drift)} differences between the pool and PostgreSQL", err=True)
        raise typer.Exit(1)
    typer.echo("the pool mirrors PostgreSQL")


@wechat.command("menu")
def wechat_menu(file: Annotated[Path, typer.Option(help="the menu, WeChat's JSON")] = Path("fixtures/wechat_menu.json"),
                ) -> None:
    """Publish the account's menu from FILE; `{public_base_url}` in its links is filled in from the settings."""
    settings = get_settings()
    if not settings.wechat.enabled:
        typer.echo("no WeChat official account is configured (set WECHAT__APP_ID and WECHAT__SECRET)", err=True)
        raise typer.Exit(2)
    try:
        loaded = menu.load(file, settings.wechat)
    except InvalidInput as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(2) from None
    menu.publish(AccountClient(settings.wechat, connect(settings.redis_url)), loaded)
    typer.echo(f"menu published from {file}")

@export.command("workload")
def export_workload(
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first local date")],
    end: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="last local date, included")],
    out: Annotated[Path, typer.Option(help="the file to write")],
    region: Annotated[str | None, typer.Option(help="region code (XL) or id; all when left out")] = None,
    format: Annotated[ExportFormat, typer.Option(help="csv (UTF-8 with BOM), xlsx or json")] = ExportFormat.CSV,
    detail: Annotated[bool, typer.Option(help="one line per work record, not only the per-technician totals")] = True,
) -> None:
    """Write the workload sheet (piece-rate pay) of a period to a file, with a progress bar."""
    settings = get_settings()
    try:
        with session_scope() as session:
            region_id = workload.region_id_of(session, region) if region else None
            scope = workload.report_scope(session, actor=OPERATOR, start=start.date(), end=end.date(),
                                          region_id=region_id, cfg=settings.workload)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn()) as bar:
                task = bar.add_task("workload lines", total=workload.export_size(session, scope=scope) if detail else 0)
                workload.export_workload(session, actor=OPERATOR, scope=scope, fmt=format, detail=detail, path=out,
                                         tz=settings.timezone, progress=lambda n: bar.advance(task, n))
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {out}")


@app.command()
def simulate(
    city: Annotated[Path, typer.Option(help="the city's fixtures folder (as `seed demo` loads)")] = Path("fixtures"),
    day: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="the local day simulated")
                   ] = datetime(2026, 11, 16),
    seed: Annotated[int, typer.Option(help="the same seed gives the same reports, choices and table")] = 7,
    policy: Annotated[list[PolicyName] | None, typer.Option(
        help="repeat to choose; every policy when left out")] = None,
    reports: Annotated[Path | None, typer.Option(help="replay this CSV of reports instead of generating them")] = None,
    out: Annotated[Path | None, typer.Option(help="write the PNG charts and the day's reports.csv here")] = None,
    database_url: Annotated[str, typer.Option(envvar="SIMULATION_DATABASE_URL", help=(
        "a database the simulation may drop and create again, as its owner"))] = SIMULATION_DATABASE_URL,
    redis_url: Annotated[str, typer.Option(envvar="SIMULATION_REDIS_URL", help="a Redis it may flush")
                         ] = SIMULATION_REDIS_URL,
) -> None:
    """Play a city-day under each dispatch policy through the real services and print the scorecard."""
    settings = get_settings()
    if make_url(database_url).database in {make_url(u).database for u in (settings.database_url,
                                                                          settings.owner_database_url)}:
        typer.echo("error: --database-url names the deployment's database; the simulation drops it", err=True)
        raise typer.Exit(2)
    place = sim_database.Place(owner_url=database_url, redis_url=redis_url)
    chosen = [str(p) for p in policy] if policy else list(POLICIES)
    scores, day_reports = sim_run.simulate(place, fixtures=city, day=day.date(), seed=seed, policies=chosen,
                                           replay=reports, settings=settings, cfg=get_simulation_settings())
    typer.echo(scorecard.table(scores))
    if out is not None:
        demand.write_csv(day_reports, out / "reports.csv")
        for written in charts.draw(scores, out):
            typer.echo(f"wrote {written}")


if __name__ == "__main__":
    app()

