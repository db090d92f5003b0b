"""`python -m aggregator`: follow the usage stream until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aggregator.consumer import Aggregator
from aggregator.settings import AggregatorSettings
from infra.aws import open_async_clients


async def main(settings: AggregatorSettings) -> None:
    async with open_async_clients(settings.aws) as clients:
        aggregator = Aggregator(settings, clients.dynamodb, clients.streams)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, aggregator.stopping.set)
        await aggregator.run()
        stats = aggregator.stats
        logging.getLogger("aggregator").info(
            "stopped: %d records read, %d usage applied, %d transactions, %d aggregate writes",
            stats.records_read,
            stats.usage_applied,
            stats.transactions,
            stats.aggregate_writes,
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(AggregatorSettings.from_env()))
