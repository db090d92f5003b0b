"""A process's own counters, written as JSON when it stops (CK_API_STATS_FILE, CK_WORKER_STATS_FILE, ...).

Benchmarks and operators read request counts from the process that made the requests instead of guessing them.
The file is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path


def stats_path(env: Mapping[str, str], variable: str) -> Path | None:
    value = env.get(variable)
    return Path(value) if value else None


def write_stats(path: Path, process: str, stats: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"process": process, "pid": os.getpid(), "written_at_ms": int(time.time() * 1000), "stats": stats}
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(document, indent=2, sort_keys=True))
    staging.replace(path)


def read_stats(path: Path) -> dict[str, object]:
    """The `stats` part of a file written by write_stats."""
    document = json.loads(path.read_text())
    stats = document["stats"]
    if not isinstance(stats, dict):
        raise ValueError(f"{path}: no stats object")
    return stats
