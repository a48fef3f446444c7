"""The planner: target dates, the range-or-grouped choice, and queueing each identity once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib import db
from chalicelib.errors import ServiceUnavailable
from chalicelib.ops import planner, queue
from chalicelib.ops.models import PlanUnit
from tests.factories import make_bars, make_symbol
from tests.ops.conftest import AFTER_CLOSE, Queues

FRIDAY = date(2025, 11, 21)
THURSDAY = date(2025, 11, 20)


def stock(symbol: str, newest: date | None, timeframe: str = "1d") -> PlanUnit:
    start = datetime(newest.year, newest.month, newest.day, 5, tzinfo=UTC) if newest else None
    return PlanUnit(symbol, "stock", timeframe, start)


class TestTargetDate:
    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            (datetime(2025, 11, 21, 21, 30, tzinfo=UTC), FRIDAY),  # 16:30 New York, settled
            (datetime(2025, 11, 21, 21, 5, tzinfo=UTC), THURSDAY),  # not settled yet
            (datetime(2025, 11, 21, 15, 0, tzinfo=UTC), THURSDAY),  # in session
            (datetime(2025, 11, 23, 12, 0, tzinfo=UTC), FRIDAY),  # Sunday
            (datetime(2025, 11, 28, 0, 30, tzinfo=UTC), date(2025, 11, 26)),  # Thanksgiving
            # 3 July and the day after Thanksgiving close at 13:00 New York: 17:00 UTC in summer
            # time, 18:00 UTC in winter time; the plan waits for the settling quarter hour.
            (datetime(2025, 7, 3, 17, 15, tzinfo=UTC), date(2025, 7, 3)),
            (datetime(2025, 7, 3, 17, 14, tzinfo=UTC), date(2025, 7, 2)),
            (datetime(2025, 11, 28, 18, 15, tzinfo=UTC), date(2025, 11, 28)),
            (datetime(2025, 11, 28, 18, 14, tzinfo=UTC), date(2025, 11, 26)),
            (datetime(2025, 7, 7, 20, 30, tzinfo=UTC), date(2025, 7, 7)),  # summer time close
            (datetime(2025, 7, 7, 20, 14, tzinfo=UTC), date(2025, 7, 3)),  # not settled yet
        ],
    )
    def test_stocks_take_the_latest_settled_session(self, now: datetime, expected: date) -> None:
        assert planner.target_date("stocks", now) == expected

    def test_crypto_takes_the_last_complete_utc_day(self) -> None:
        assert planner.target_date("crypto", datetime(2025, 11, 23, 0, 15, tzinfo=UTC)) == date(
            2025, 11, 22
        )


class TestBuildPlan:
    def test_caught_up_stocks_share_one_grouped_request(self) -> None:
        units = [stock(f"S{n}", THURSDAY) for n in range(500)]

        plan = planner.build_plan("stocks", units, FRIDAY)

        assert plan.grouped_days == [FRIDAY]
        assert plan.grouped_symbols == 500
        assert plan.symbol_messages == []
        assert plan.provider_requests == 1
        (message,) = plan.messages
        assert message.symbols == sorted(f"S{n}" for n in range(500))  # type: ignore[union-attr]

    def test_timeframes_built_from_stored_bars_are_queued_but_cost_no_request(self) -> None:
        units = [
            stock("AAPL", THURSDAY, "1m"),
            PlanUnit("AAPL", "stock", "5m", None, derived=True),
            PlanUnit("AAPL", "stock", "1h", None, derived=True),
        ]

        plan = planner.build_plan("stocks", units, FRIDAY)

        assert [(m.symbol, m.timeframe) for m in plan.symbol_messages] == [
            ("AAPL", "1m"),
            ("AAPL", "5m"),
            ("AAPL", "1h"),
        ]
        assert plan.provider_requests == 1

    def test_a_lone_stock_takes_its_own_range_request(self) -> None:
        plan = planner.build_plan("stocks", [stock("AAPL", THURSDAY)], FRIDAY)

        assert plan.grouped_days == []
        assert [m.symbol for m in plan.symbol_messages] == ["AAPL"]

    def test_new_symbols_and_intraday_always_take_ranges(self) -> None:
        units = [stock(f"S{n}", THURSDAY) for n in range(5)]
        units += [stock("NEW", None), stock("S0", THURSDAY, timeframe="1h")]

        plan = planner.build_plan("stocks", units, FRIDAY)

        assert plan.grouped_days == [FRIDAY]
        assert sorted((m.symbol, m.timeframe) for m in plan.symbol_messages) == [
            ("NEW", "1d"),
            ("S0", "1h"),
        ]

    def test_up_to_date_symbols_need_nothing(self) -> None:
        plan = planner.build_plan("stocks", [stock("AAPL", FRIDAY)], FRIDAY)

        assert plan.messages == []
        assert plan.up_to_date == 1

    def test_long_gaps_go_per_symbol_when_that_is_cheaper(self) -> None:
        # Ten symbols missing Friday only, one missing the last 30 sessions: grouping the ten
        # costs 1 request; adding the laggard would add 29 dates to save 1 range request.
        units = [stock(f"S{n}", THURSDAY) for n in range(10)]
        units.append(stock("LAG", FRIDAY - timedelta(days=45)))

        plan = planner.build_plan("stocks", units, FRIDAY)

        assert plan.grouped_days == [FRIDAY]
        assert [m.symbol for m in plan.symbol_messages] == ["LAG"]
        assert plan.provider_requests == 2

    def test_no_target_plans_nothing(self) -> None:
        assert planner.build_plan("stocks", [stock("AAPL", None)], None).messages == []


def grouped_ready_symbols(conn: db.Connection, count: int) -> None:
    for n in range(count):
        symbol = f"T{n}"
        make_symbol(conn, symbol)
        make_bars(conn, symbol, [datetime(2025, 11, 20, 5, tzinfo=UTC)])


@pytest.mark.usefixtures("queues")
class TestRunPlan:
    def test_queues_each_identity_once(self, pinned_db: db.Connection, queues: Queues) -> None:
        grouped_ready_symbols(pinned_db, 12)
        make_symbol(pinned_db, "NEWCO")

        first = planner.run_plan(["stocks"], now=AFTER_CLOSE)
        second = planner.run_plan(["stocks"], now=AFTER_CLOSE + timedelta(minutes=5))

        assert (first[0].sent, first[0].already_queued, first[0].sqs_calls) == (2, 0, 1)
        assert (second[0].sent, second[0].already_queued, second[0].sqs_calls) == (0, 2, 0)
        bodies = sorted(queues.take_all(), key=lambda body: body["kind"])
        assert bodies == [
            {
                "kind": "grouped_daily",
                "market": "stocks",
                "window": "2025-11-21",
                "symbols": sorted(f"T{n}" for n in range(12)),
                "timeframe": "1d",
            },
            {"kind": "symbol", "symbol": "NEWCO", "timeframe": "1d", "window": "2025-11-21"},
        ]

    def test_a_timeframe_built_from_stored_bars_is_counted_without_a_request(
        self, pinned_db: db.Connection, queues: Queues
    ) -> None:
        make_symbol(pinned_db, "NEWCO", timeframes=["1m", "5m", "4h"])

        (report,) = planner.run_plan(["stocks"], now=AFTER_CLOSE)

        # 1m and 4h are fetched; 5m is built from the stored 1m bars.
        assert (report.symbol_messages, report.provider_requests) == (3, 2)
        assert sorted(body["timeframe"] for body in queues.take_all()) == ["1m", "4h", "5m"]

    def test_no_active_symbols_sends_nothing_and_says_so(
        self, pinned_db: db.Connection, queues: Queues, capsys: pytest.CaptureFixture[str]
    ) -> None:
        make_symbol(pinned_db, "GONE", active=False)

        (report,) = planner.run_plan(["stocks"], now=AFTER_CLOSE)

        assert (report.units, report.sent, report.sqs_calls) == (0, 0, 0)
        assert queues.count() == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {
            "event": "backfill.plan.empty",
            "market": "stocks",
            "reason": "no active symbols; nothing sent",
        }.items() <= lines[-1].items()

    def test_bodies_go_ten_a_call(self, queues: Queues) -> None:
        bodies = [f'{{"n": {n}}}' for n in range(101)]

        report = queue.send_bodies("mdw-backfill", bodies)

        assert report.calls == 11
        assert report.accepted == list(range(101))
        assert report.failed == {}
        assert queues.count() == 101

    def test_messages_sqs_refused_are_sent_by_the_next_run(
        self, pinned_db: db.Connection, queues: Queues, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        make_symbol(pinned_db, "AAA")
        make_symbol(pinned_db, "BBB")
        real_client = queue.sqs_client()

        class Refusing:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_client, name)

            def send_message_batch(self, **kwargs: Any) -> Any:
                raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessageBatch")

        monkeypatch.setattr(queue, "sqs_client", lambda: Refusing())
        with pytest.raises(ServiceUnavailable) as raised:
            planner.run_plan(["stocks"], now=AFTER_CLOSE)
        assert raised.value.message == (
            "SQS refused 2 backfill message(s); they are sent again by the next run"
        )
        assert queues.count() == 0

        monkeypatch.setattr(queue, "sqs_client", lambda: real_client)
        (report,) = planner.run_plan(["stocks"], now=AFTER_CLOSE)

        assert (report.sent, report.already_queued) == (2, 0)
        assert sorted(body["symbol"] for body in queues.take_all()) == ["AAA", "BBB"]


def test_refused_entries_are_retried_after_a_growing_jittered_pause(
    queues: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_client = queue.sqs_client()
    calls = 0

    class ThrottledTwice:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_client, name)

        def send_message_batch(self, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise ClientError({"Error": {"Code": "ThrottlingException"}}, "SendMessageBatch")
            return real_client.send_message_batch(**kwargs)

    pauses: list[float] = []
    bounds: list[tuple[float, float]] = []
    monkeypatch.setattr(queue, "sqs_client", lambda: ThrottledTwice())
    monkeypatch.setattr(queue.time, "sleep", pauses.append)
    monkeypatch.setattr(
        queue.random, "uniform", lambda low, high: bounds.append((low, high)) or high / 2
    )

    report = queue.send_bodies("mdw-backfill", ['{"n": 1}'])

    assert report.accepted == [0]
    assert report.calls == 3
    assert bounds == [(0, 0.2), (0, 0.4)]
    assert pauses == [0.1, 0.2]
    assert queues.count() == 1


def test_a_missing_queue_is_a_clear_error(
    aws: None, pinned_db: db.Connection, set_env: Any
) -> None:
    set_env(BACKFILL_QUEUE_NAME="no-such-queue")
    make_symbol(pinned_db, "AAA")
    boto3.client("sqs")  # the region and credentials are moto's

    with pytest.raises(ServiceUnavailable) as raised:
        planner.run_plan(["stocks"], now=AFTER_CLOSE)

    assert raised.value.message == (
        "cannot find SQS queue 'no-such-queue': AWS.SimpleQueueService.NonExistentQueue"
    )
