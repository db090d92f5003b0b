"""`python -m aggregator`: follow the usage stream until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aggregator.consumer import Aggregator, AggregatorStats
from aggregator.settings import AggregatorSettings
from runtime.aws import open_async_clients
from runtime.stats_file import write_stats


async def main(settings: AggregatorSettings) -> None:
    async with open_async_clients(settings.aws) as clients:
        aggregator = Aggregator(settings, clients.dynamodb, clients.streams)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, aggregator.stopping.set)
        await aggregator.run()
        stats = aggregator.stats
        logging.getLogger("aggregator").info(
            "stopped: %d records read, %d usage applied, %d batches, %d aggregate writes",
            stats.records_read,
            stats.usage_applied,
            stats.batches,
            stats.aggregate_writes,
        )
        if settings.stats_file is not None:
            write_stats(settings.stats_file, "aggregator", stats_document(stats))


def stats_document(stats: AggregatorStats) -> dict[str, object]:
    return {
        "records_read": stats.records_read,
        "usage_applied": stats.usage_applied,
        "batches": stats.batches,
        "aggregate_writes": stats.aggregate_writes,
        "checkpoint_writes": stats.checkpoint_writes,
        "replays_skipped": stats.replays_skipped,
        "refused_updates": stats.refused_updates,
        "errors": stats.errors,
        "trimmed_restarts": stats.trimmed_restarts,
        "end_to_end_lag_ms": stats.end_to_end_lag.summary(),
        "stream_lag_ms": stats.stream_lag.summary(),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(AggregatorSettings.from_env()))
