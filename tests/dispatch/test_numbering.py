"""Ticket numbers from the Redis counter: unique and increasing per branch and day, whatever Redis loses."""

from collections.abc import Callable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy.orm import Session

from dispatch.app import create_app
from dispatch.kernel.settings import Settings
from dispatch.tickets import numbering
from tests.conftest import in_test_transaction

XL_POINT = {"lat": 43.935, "lng": 116.08}
XL_BRANCH = 2


def report(client: TestClient, headers: dict[str, str], phone: str) -> str:
    reply = client.post("/api/v1/tickets", headers=headers, json={
        "type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
        "contact": {"name": "张三", "phone": phone}})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["number"])


def seq_of(number: str) -> int:
    return int(number.rsplit("-", 1)[1])


def counter_key() -> str:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    return f"fp:{{b{XL_BRANCH}}}:ticket-number:{today:%Y%m%d}"


def test_numbers_of_a_branch_and_day_increase_by_one(client: TestClient, as_user: Callable[[str], dict[str, str]]
                                                     ) -> None:
    numbers = [report(client, as_user("dispatcher.xl"), f"1390000{n:04d}") for n in range(3)]
    assert [seq_of(n) - seq_of(numbers[0]) for n in numbers] == [0, 1, 2]


def test_numbering_goes_on_above_the_day_after_redis_lost_its_counter(
        client: TestClient, as_user: Callable[[str], dict[str, str]], redis: Redis) -> None:
    before = report(client, as_user("dispatcher.xl"), "13900000001")
    redis.flushdb()  # Redis keeps nothing on disk: a restart loses the counter
    after = report(client, as_user("dispatcher.xl"), "13900000002")
    assert seq_of(after) == seq_of(before) + 1


def test_a_number_already_taken_is_skipped_and_the_report_kept(
        client: TestClient, as_user: Callable[[str], dict[str, str]], redis: Redis) -> None:
    taken = report(client, as_user("dispatcher.xl"), "13900000001")
    # As after a reseed while an older intake had not committed: the counter hands out a taken number.
    redis.set(counter_key(), seq_of(taken) - 1)
    kept = report(client, as_user("dispatcher.xl"), "13900000002")
    assert seq_of(kept) == seq_of(taken) + 1


@pytest.fixture
def client_without_redis(settings: Settings, db: Session) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"}))  # nothing listens on 9

    in_test_transaction(app, db)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_reports_are_numbered_in_postgresql_while_redis_is_down(
        client: TestClient, client_without_redis: TestClient, as_user: Callable[[str], dict[str, str]]) -> None:
    first = report(client, as_user("dispatcher.xl"), "13900000001")
    numbers = [report(client_without_redis, as_user("dispatcher.xl"), f"1390000{n:04d}") for n in range(2, 4)]
    assert [seq_of(n) for n in numbers] == [seq_of(first) + 1, seq_of(first) + 2]


def test_the_day_s_highest_number_is_read_from_postgresql(client: TestClient,
                                                          as_user: Callable[[str], dict[str, str]],
                                                          db: Session) -> None:
    number = report(client, as_user("dispatcher.xl"), "13900000001")
    prefix = number[: -len(number.rsplit("-", 1)[1])]
    assert numbering.highest(db, prefix) == seq_of(number)
    assert numbering.highest(db, "XL-19700101-") == 0
