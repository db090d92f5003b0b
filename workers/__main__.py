"""`python -m workers`: consume the usage queue until SIGTERM/SIGINT, then finish in-flight batches and exit."""

from __future__ import annotations

import asyncio
import logging
import signal

from catalog.store import CatalogStore
from runtime.aws import open_async_clients
from runtime.stats_file import write_stats
from workers.consumer import Worker, describe_stats
from workers.processor import UsageWriter
from workers.redrive import DeadLetterRedriver
from workers.settings import WorkerSettings


async def main(settings: WorkerSettings) -> None:
    names = settings.aws.names
    async with open_async_clients(settings.aws) as clients:
        queue_url = (await clients.sqs.get_queue_url(QueueName=names.usage_queue))["QueueUrl"]
        dlq_url = (await clients.sqs.get_queue_url(QueueName=names.dead_letter_queue))["QueueUrl"]
        catalog = CatalogStore(clients.dynamodb, names.config_table, settings.catalog_cache_ttl_s)
        writer = UsageWriter(settings, clients.dynamodb, catalog)
        worker = Worker(settings, clients.sqs, writer, queue_url, dlq_url)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stopping.set)
        logging.getLogger("worker").info("consuming %s with %d pollers", queue_url, settings.pollers)
        redriver = DeadLetterRedriver(
            clients.sqs, writer, queue_url, dlq_url, settings.redrive_interval_s, writer.writes_healthy
        )
        sweeping = asyncio.create_task(redriver.run(worker.stopping)) if settings.redrive_interval_s > 0 else None
        await worker.run()
        if sweeping is not None:
            await sweeping
        logging.getLogger("worker").info("drained and stopped: %s", describe_stats(worker.stats))
        if settings.stats_file is not None:
            write_stats(
                settings.stats_file,
                "worker",
                {
                    **vars(worker.stats),
                    "usage_write_requests": writer.write_requests,
                    "dead_letters_redriven": redriver.stats.redriven,
                },
            )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(WorkerSettings.from_env()))
