"""workers/backoff.py: retries back off for minutes, so an outage does not send accepted usage to the DLQ."""

from __future__ import annotations

import pytest

from runtime.env import InvalidSetting
from runtime.resources import DLQ_RETENTION_S, MAX_RECEIVE_COUNT, QUEUE_RETENTION_S
from workers.backoff import MAX_VISIBILITY_TIMEOUT_S, retry_delay_s, time_to_dead_letter_s
from workers.settings import MIN_USAGE_RETENTION_DAYS, WorkerSettings


def test_the_delay_doubles_per_delivery_up_to_its_cap() -> None:
    assert [retry_delay_s(n, 5, 900) for n in range(1, 11)] == [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]
    assert retry_delay_s(0, 5, 900) == 5  # a count SQS did not give reads as a first delivery
    assert retry_delay_s(10**6, 5, 10**9) == MAX_VISIBILITY_TIMEOUT_S


def test_with_the_defaults_an_outage_is_ridden_out_for_most_of_an_hour_before_the_dead_letter_queue() -> None:
    defaults = WorkerSettings.from_env({})
    waited_s = time_to_dead_letter_s(defaults.retry_base_s, defaults.retry_max_s)
    assert MAX_RECEIVE_COUNT == 10
    assert waited_s == 3075  # 51 minutes and 15 seconds
    assert waited_s > 45 * 60


def test_usage_retention_shorter_than_the_queues_can_hold_a_message_is_refused() -> None:
    assert MIN_USAGE_RETENTION_DAYS * 86400 >= QUEUE_RETENTION_S + DLQ_RETENTION_S
    assert (
        WorkerSettings.from_env({"CK_USAGE_RETENTION_DAYS": str(MIN_USAGE_RETENTION_DAYS)}).usage_retention_days == 18
    )
    with pytest.raises(InvalidSetting, match="CK_USAGE_RETENTION_DAYS=13"):
        WorkerSettings.from_env({"CK_USAGE_RETENTION_DAYS": "13"})
