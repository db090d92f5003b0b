"""The tables and queues of one deployment: their names, shapes and the constants every process shares.

Definitions only; creating them is operator tooling (infra/resource_setup.py) and the CloudFormation template in
infra/deploy/ declares the same resources for AWS (tests/unit/test_template.py keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass

# The names the integration-testing guide prints (bedrock-cost-keeper-config, -usage, -aggregates, -tokens, -secrets).
DEFAULT_PREFIX = "bedrock-cost-keeper-"
TTL_ATTRIBUTE = "expires_at"

# Redrive after ten receives: with the workers' back-off (workers/backoff.py) that is most of an hour of failing
# writes, so an outage of the usage table does not send accepted usage to the dead-letter queue. Poison messages do
# not wait for it: the worker forwards them at once.
MAX_RECEIVE_COUNT = 10
QUEUE_VISIBILITY_TIMEOUT_S = 30
QUEUE_RETENTION_S = 4 * 24 * 3600
DLQ_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class ResourceNames:
    """Physical names of the tables and queues, all derived from one prefix so stacks can share an account."""

    prefix: str

    @property
    def config_table(self) -> str:
        return f"{self.prefix}config"

    @property
    def usage_table(self) -> str:
        return f"{self.prefix}usage"

    @property
    def aggregates_table(self) -> str:
        return f"{self.prefix}aggregates"

    @property
    def checkpoints_table(self) -> str:
        return f"{self.prefix}stream-checkpoints"

    @property
    def revoked_tokens_table(self) -> str:
        return f"{self.prefix}tokens"

    @property
    def one_time_secrets_table(self) -> str:
        return f"{self.prefix}secrets"

    @property
    def usage_queue(self) -> str:
        return f"{self.prefix}usage"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}usage-dlq"


# The usage table's index by org and org-local day (its key is written by aggregator/usage_record.py): what
# `costkeeper reconcile` recomputes aggregates from. DynamoDB Local never runs TTL deletes on a table with an index.
USAGE_DAY_INDEX = "by-org-day"
USAGE_DAY_INDEX_KEY = "day_bucket"


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index: a string hash key, every attribute projected."""

    name: str
    hash_key: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    stream: bool = False
    ttl: bool = False
    has_sort_key: bool = True
    role: str = ""
    indexes: tuple[IndexSpec, ...] = ()


def table_specs(names: ResourceNames) -> list[TableSpec]:
    return [
        TableSpec(names.config_table, ttl=True, role="orgs, apps, hashed credentials, sticky model fallbacks"),
        TableSpec(
            names.usage_table,
            stream=True,
            ttl=True,
            has_sort_key=False,
            role="one item per request_id",
            indexes=(IndexSpec(USAGE_DAY_INDEX, USAGE_DAY_INDEX_KEY),),
        ),
        TableSpec(names.aggregates_table, role="daily spend per org / app / model label / org-local day"),
        TableSpec(
            names.checkpoints_table,
            # Shard checkpoints never expire. (TTL stays enabled: batch markers of an earlier Lambda aggregator
            # expire through it.)
            ttl=True,
            has_sort_key=False,
            role="how far each stream shard has been counted (both aggregator modes)",
        ),
        TableSpec(names.revoked_tokens_table, ttl=True, has_sort_key=False, role="revoked token ids until expiry"),
        TableSpec(names.one_time_secrets_table, ttl=True, has_sort_key=False, role="secrets claimable once"),
    ]
