"""API processes of a test's own, with settings of their own, on the session pipeline's tables (the `own_api`
fixture in conftest.py)."""

from __future__ import annotations

import httpx

from infra.processes import PipelineProcess, wait_for_http
from tests.integration.harness import Pipeline, free_port


class OwnApis:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._processes: list[PipelineProcess] = []
        self._clients: list[httpx.Client] = []

    def __call__(self, **env: str) -> httpx.Client:
        """Starts an API with these CK_ variables on top of the session pipeline's; a client of it."""
        port = free_port()
        pipeline = self._pipeline
        process = PipelineProcess(
            "api", {**pipeline.env, "CK_API_PORT": str(port), **env}, pipeline.log_dir / f"api-own-{port}.log"
        )
        process.start()
        self._processes.append(process)
        wait_for_http(f"http://127.0.0.1:{port}/health", 60, process)
        self._clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        return self._clients[-1]

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for process in self._processes:
            process.stop()
