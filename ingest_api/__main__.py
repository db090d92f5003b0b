"""`python -m ingest_api`: serve the API with uvicorn (CK_API_HOST, CK_API_PORT)."""

from __future__ import annotations

import logging
import os

import uvicorn

from ingest_api.app import create_app
from ingest_api.settings import ApiSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(ApiSettings.from_env())
    uvicorn.run(
        app,
        host=os.environ.get("CK_API_HOST", "127.0.0.1"),
        port=int(os.environ.get("CK_API_PORT", "8080")),
        log_level=os.environ.get("CK_LOG_LEVEL", "info"),
        access_log=os.environ.get("CK_ACCESS_LOG", "0") == "1",
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
