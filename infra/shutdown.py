"""Stopping the local stack without losing queued work (`costkeeper stop`).

DynamoDB Local keeps its tables on disk, but moto's SQS holds messages in memory only: an event the API accepted and
the worker has not written yet would be lost with it. So `stop` first lets the worker drain the queues, then stops
the pipeline that `costkeeper run` started (its SIGTERM drains what the worker holds), and only then the emulator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

Report = Callable[[str], None]

_DEPTH_ATTRIBUTES: list[QueueAttributeNameType] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def pipeline_pid_file(run_dir: Path) -> Path:
    """Where `costkeeper run` writes its pid, so that `stop` in another terminal can find it."""
    return run_dir / "pipeline.pid"


def running_pipeline(run_dir: Path) -> int | None:
    try:
        pid = int(pipeline_pid_file(run_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A pid file left by a crash may name a pid reused since: act only on a process that is a costkeeper run.
    with contextlib.suppress(OSError):  # no /proc (macOS): the pid file is all there is to go by
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"costkeeper" not in command and b"infra" not in command:
            return None
    return pid


def queue_depths(sqs: SQSClient) -> dict[str, int]:
    """Messages in each queue of the emulator (any prefix): visible, in flight and delayed."""
    depths: dict[str, int] = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_DEPTH_ATTRIBUTES)["Attributes"]
        depths[url.rsplit("/", 1)[-1]] = sum(int(attributes.get(name, "0")) for name in _DEPTH_ATTRIBUTES)
    return depths


def _pending(depths: dict[str, int]) -> dict[str, int]:
    # Dead letters wait for an operator, not for the worker: they are reported, not waited for.
    return {name: n for name, n in depths.items() if n and not name.endswith("-dlq")}


def drain_queues(
    sqs: SQSClient,
    worker_running: bool,
    timeout_s: float,
    report: Report,
    poll_s: float = 1.0,
    stalled_s: float = 5.0,
) -> None:
    """Wait until no queue holds a message for a worker, while that still happens; say what would be lost."""
    deadline = time.monotonic() + timeout_s
    # Without a pipeline of ours a worker may still run elsewhere (`python -m workers`): wait while depths change.
    stalled_after_s = timeout_s if worker_running else stalled_s
    last_change = time.monotonic()
    pending = _pending(queue_depths(sqs))
    while pending and time.monotonic() < deadline and time.monotonic() - last_change < stalled_after_s:
        report(f"waiting for the worker to drain {sum(pending.values())} message(s): {pending}")
        time.sleep(poll_s)
        now = _pending(queue_depths(sqs))
        if now != pending:
            last_change = time.monotonic()
        pending = now
    depths = queue_depths(sqs)
    for name, count in _pending(depths).items():
        report(f"warning: {count} message(s) in {name} are lost with moto's memory (no worker drained them)")
    for name, count in depths.items():
        if count and name.endswith("-dlq"):
            report(
                f"warning: {count} dead letter(s) in {name} are lost with moto's memory (`costkeeper redrive` first)"
            )


def stop_pipeline(run_dir: Path, report: Report, timeout_s: float = 60.0) -> None:
    """SIGTERM the `costkeeper run` of this run folder and wait while it drains and stops its processes."""
    pid = running_pipeline(run_dir)
    if pid is None:
        return
    report(f"stopping the pipeline of `costkeeper run` (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while running_pipeline(run_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pipeline(run_dir) is not None:
        report(f"warning: the pipeline (pid {pid}) is still stopping after {timeout_s:.0f}s")
