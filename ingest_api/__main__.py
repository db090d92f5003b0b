"""`python -m ingest_api`: serve the API with uvicorn on CK_API_HOST:CK_API_PORT."""

from __future__ import annotations

import logging

import uvicorn

from ingest_api.app import create_app
from ingest_api.settings import ApiSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ApiSettings.from_env()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=20,
        # The client address (rate limits per address) comes from X-Forwarded-For only when the load balancer sent it.
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )


if __name__ == "__main__":
    main()
