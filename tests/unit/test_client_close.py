"""Ending: close() and flush() deliver what is buffered; at interpreter exit the client does it by itself; whatever
cannot be delivered in time is reported, never dropped silently."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from costkeeper_client import NOT_SENT_BEFORE_CLOSE, AsyncCostKeeperClient, ClientClosed, CostKeeperClient
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi

REPO = Path(__file__).resolve().parents[2]


def test_close_delivers_everything_buffered() -> None:
    api = FakeApi()
    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
        ids = {keeper.record("premium", input_tokens=i).request_id for i in range(130)}
    assert set(api.accepted) == ids
    assert keeper.stats().delivered == 130
    assert keeper.failures() == []


def test_flush_delivers_without_closing_and_the_client_goes_on() -> None:
    api = FakeApi()
    keeper = CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options())
    first = keeper.record("premium").request_id
    assert keeper.flush(timeout_s=10)
    assert list(api.accepted) == [first]
    second = keeper.record("economy").request_id
    keeper.close()
    keeper.close()  # idempotent
    assert list(api.accepted) == [first, second]


def test_close_reports_what_it_could_not_deliver_in_time() -> None:
    api = FakeApi()
    api.gate.clear()  # the API never answers while the client closes
    reported: list[str] = []
    options = api.options(max_in_flight=1, max_batch_items=10, on_failure=lambda f: reported.append(f.code))
    keeper = CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options)
    ids = [keeper.record("premium").request_id for _ in range(25)]
    try:
        keeper.close(timeout_s=0.2)
    finally:
        api.gate.set()
    failures = keeper.failures()
    assert sorted(f.event.request_id for f in failures) == sorted(ids)
    assert {f.code for f in failures} == {NOT_SENT_BEFORE_CLOSE}
    assert reported == [NOT_SENT_BEFORE_CLOSE] * 25
    assert keeper.stats().failed == 25


def test_take_failures_hands_them_over_once() -> None:
    api = FakeApi()
    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
        keeper.record("unknown-label")
    assert [f.code for f in keeper.take_failures()] == ["UNKNOWN_MODEL_LABEL"]
    assert keeper.take_failures() == []
    assert keeper.stats().failed == 1


# -- at interpreter exit: a child interpreter that records and never closes -------------------------------------------

PRELUDE = """
import json, sys, threading

_out = threading.Lock()

def emit(record):
    # One line per call, whole, whichever thread prints (the caller's or the client's).
    with _out:
        sys.stdout.write(json.dumps(record) + "\\n")
        sys.stdout.flush()
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi
from costkeeper_client import AsyncCostKeeperClient, CostKeeperClient

api = FakeApi()
handle = api.handle

async def report(request):
    response = await handle(request)
    if response.status_code == 207:
        body = json.loads(response.content)
        for result in body["results"]:
            emit({"status": result["status"], "request_id": result["request_id"]})
    return response

api.handle = report
options = api.options(flush_at_exit=True, on_failure=lambda f: emit({"failed": f.code}))
"""


def run_child(body: str) -> tuple[list[str], list[str], list[str]]:
    """Recorded ids (printed by the child), ids the API accepted, and failure codes reported at exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    lines = [json.loads(line) for line in child.stdout.splitlines()]
    recorded = [line["recorded"] for line in lines if "recorded" in line]
    accepted = [line["request_id"] for line in lines if line.get("status") == 202]
    failed = [line["failed"] for line in lines if "failed" in line]
    return recorded, accepted, failed


def test_the_blocking_client_delivers_at_interpreter_exit() -> None:
    recorded, accepted, failed = run_child(
        """
        keeper = CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options)
        for i in range(250):
            emit({"recorded": keeper.record("premium", input_tokens=i).request_id})
        keeper.record("unknown-label")
        """
    )
    assert len(recorded) == 250
    assert sorted(set(accepted)) == sorted(recorded)
    assert failed == ["UNKNOWN_MODEL_LABEL"]


def test_the_asyncio_client_delivers_at_exit_what_its_loop_left_behind() -> None:
    # The loop ends (asyncio.run returns) without aclose(): some batches are in flight, cancelled mid-post; others
    # were never taken. All are delivered at exit on a loop of their own, with the same request_ids.
    recorded, accepted, failed = run_child(
        """
        import asyncio

        async def slow(request):
            await asyncio.sleep(0.01)
            return await report(request)

        options = api.options(
            flush_at_exit=True, transport=__import__("httpx").MockTransport(slow), max_in_flight=2, max_batch_items=10
        )

        async def main():
            keeper = AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options)
            for i in range(100):
                emit({"recorded": (await keeper.record("premium")).request_id})
            await asyncio.sleep(0.015)  # some batches are posted, some in the API's hands

        asyncio.run(main())
        """
    )
    assert len(recorded) == 100
    assert sorted(set(accepted)) == sorted(recorded)
    assert failed == []


def test_recorders_waiting_for_room_are_released_with_client_closed_when_the_client_closes() -> None:
    api = FakeApi()
    api.gate.clear()
    options = api.options(max_buffered_events=100, max_batch_items=10)
    keeper = CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options)
    for _ in range(100):
        keeper.record("premium")
    outcome: list[BaseException] = []

    def one_more() -> None:
        try:
            keeper.record("premium")
        except BaseException as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=one_more)
    waiting.start()
    try:
        keeper.close(timeout_s=0.2)
    finally:
        api.gate.set()
    waiting.join()
    assert [type(exc) for exc in outcome] == [ClientClosed]
    assert keeper.stats().failed == 100
    assert {f.code for f in keeper.failures()} == {NOT_SENT_BEFORE_CLOSE}


def test_an_asyncio_client_closed_on_another_loop_delivers_what_the_first_loop_left() -> None:
    api = FakeApi()
    keeper = AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options())

    async def record() -> list[str]:
        # Returns before the batcher ever runs: asyncio.run then cancels it, and the events stay buffered.
        return [(await keeper.record("premium")).request_id for _ in range(30)]

    ids = asyncio.run(record())
    assert api.posts == []
    asyncio.run(keeper.aclose())
    assert sorted(api.accepted) == sorted(ids)
    assert keeper.failures() == []
