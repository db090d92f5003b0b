"""Running the pipeline's three processes (API, worker, aggregator) as children, for `costkeeper run` and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

PROCESS_MODULES = {"api": "ingest_api", "worker": "workers", "aggregator": "aggregator"}


class PipelineProcess:
    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_path: Path | None = None,
        echo: bool = False,
        module: str | None = None,
    ) -> None:
        self.name = name
        # Any `python -m` module may run this way (a benchmark's own server, say); the pipeline's are the default.
        self._module = module or PROCESS_MODULES[name]
        self._env = dict(env)
        self._log_path = log_path
        self._echo = echo
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self._module],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._pump = threading.Thread(target=self._copy_output, daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        log: IO[bytes] | None = self._log_path.open("ab") if self._log_path else None
        prefix = f"[{self.name}] ".encode()
        try:
            for line in self._proc.stdout:
                if log:
                    log.write(line)
                    log.flush()
                if self._echo:
                    sys.stdout.buffer.write(prefix + line)
                    sys.stdout.flush()
        finally:
            if log:
                log.close()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, and SIGKILL if it has not finished draining in time."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._join()
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to drain."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._join()

    def _join(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)
            if not self._pump.is_alive() and self._proc is not None and self._proc.stdout is not None:
                # The pump has read to the end: the pipe is ours to close.
                self._proc.stdout.close()


def wait_for_http(url: str, timeout_s: float = 30.0, process: PipelineProcess | None = None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited with {process.returncode()} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - a local URL we built
                return
        except urllib.error.HTTPError:
            return  # it answers, even if unhealthy
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
