"""The aggregator's settings, read once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.aws import AwsSettings
from runtime.env import Parse, overrides, path


@dataclass(frozen=True)
class AggregatorSettings:
    aws: AwsSettings
    # GetRecords returns at most 1000 records; bigger batches mean fewer aggregate writes per event.
    records_per_read: int = 1000
    # How long an idle shard waits before reading again: bounds end-to-end lag when traffic is light.
    idle_poll_s: float = 0.2
    # After a read that returned records but not a full batch, wait this long before reading again, so the records
    # arriving meanwhile share one transaction: commits (and aggregate writes) then come at most this often per shard,
    # whatever the event rate, at the price of up to this much extra lag. A full batch is followed at once.
    batch_window_s: float = 0.5
    # How often the shard list is refreshed, to pick up shards opened by a split or a table's new stream.
    shard_refresh_s: float = 5.0
    # Back-off after an unexpected error, before the shard is read again from its checkpoint.
    error_backoff_s: float = 1.0
    # Where the counters and lag percentiles are written as JSON on shutdown; None: nowhere.
    stats_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AggregatorSettings:
        env = os.environ if env is None else env
        return cls(aws=AwsSettings.from_env(env), **overrides(env, ENVIRONMENT))


# Each variable and the field it sets; the field's default applies when it is unset.
ENVIRONMENT: dict[str, tuple[str, Parse]] = {
    "CK_AGGREGATOR_RECORDS_PER_READ": ("records_per_read", int),
    "CK_AGGREGATOR_IDLE_POLL_S": ("idle_poll_s", float),
    "CK_AGGREGATOR_BATCH_WINDOW_S": ("batch_window_s", float),
    "CK_AGGREGATOR_SHARD_REFRESH_S": ("shard_refresh_s", float),
    "CK_AGGREGATOR_STATS_FILE": ("stats_file", path),
}
