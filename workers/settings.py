"""The worker's settings, read once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.aws import AwsSettings
from runtime.env import InvalidSetting, Parse, overrides, path
from runtime.resources import DLQ_RETENTION_S, QUEUE_RETENTION_S


@dataclass(frozen=True)
class WorkerSettings:
    aws: AwsSettings
    # Concurrent ReceiveMessage loops; each handles up to 10 messages (the SQS maximum) at a time.
    pollers: int = 2
    wait_time_s: int = 20
    # Insert requests (of up to 25 usage items each, insert.py) in flight at once across all messages of a receive.
    write_concurrency: int = 16
    # Usage items expire after this many days (aggregates are kept; the aggregator ignores expiry deletes). At least
    # as long as a message can wait on the queues (MIN_USAGE_RETENTION_DAYS), or items of a day would expire while
    # late ones of the same day still arrive, and `costkeeper reconcile` would take the day's aggregates for wrong.
    usage_retention_days: int = 400
    # A failed message becomes visible again after min(base * 2**(receives-1), max): workers/backoff.py.
    retry_base_s: int = 5
    retry_max_s: int = 900
    catalog_cache_ttl_s: float = 5.0
    # How often the dead-letter queue is swept for messages whose cause has cleared (workers/redrive.py); 0: never.
    redrive_interval_s: float = 300.0
    # Where the request counters are written as JSON on shutdown; None: nowhere.
    stats_file: Path | None = None

    def __post_init__(self) -> None:
        if self.usage_retention_days < MIN_USAGE_RETENTION_DAYS:
            raise InvalidSetting(
                f"CK_USAGE_RETENTION_DAYS={self.usage_retention_days}: usage must be kept at least "
                f"{MIN_USAGE_RETENTION_DAYS} days, as long as a message can wait on the usage queue and the "
                "dead-letter queue"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        return cls(aws=AwsSettings.from_env(env), **overrides(env, ENVIRONMENT))


# A message waits at most the queue's retention, then the dead-letter queue's, before it is priced (or lost).
MIN_USAGE_RETENTION_DAYS = -(-(QUEUE_RETENTION_S + DLQ_RETENTION_S) // 86400)


# Each variable and the field it sets; the field's default applies when it is unset.
ENVIRONMENT: dict[str, tuple[str, Parse]] = {
    "CK_WORKER_POLLERS": ("pollers", int),
    "CK_WORKER_WAIT_TIME_S": ("wait_time_s", int),
    "CK_WORKER_WRITE_CONCURRENCY": ("write_concurrency", int),
    "CK_USAGE_RETENTION_DAYS": ("usage_retention_days", int),
    "CK_WORKER_RETRY_BASE_S": ("retry_base_s", int),
    "CK_WORKER_RETRY_MAX_S": ("retry_max_s", int),
    "CK_CATALOG_CACHE_TTL_S": ("catalog_cache_ttl_s", float),
    "CK_WORKER_REDRIVE_INTERVAL_S": ("redrive_interval_s", float),
    "CK_WORKER_STATS_FILE": ("stats_file", path),
}
