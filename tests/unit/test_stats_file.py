"""infra/stats_file.py: a process's counters survive it as JSON, found through its own variable."""

from __future__ import annotations

from pathlib import Path

from runtime.stats_file import read_stats, stats_path, write_stats


def test_written_stats_read_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "worker-stats.json"
    write_stats(path, "worker", {"receives": 3, "lag": {"p99_ms": 12}})
    assert read_stats(path) == {"receives": 3, "lag": {"p99_ms": 12}}
    write_stats(path, "worker", {"receives": 4})
    assert read_stats(path) == {"receives": 4}
    # Replaced atomically: no staging file is left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["worker-stats.json"]


def test_the_variable_names_the_file_and_an_empty_one_means_none() -> None:
    assert stats_path({"CK_WORKER_STATS_FILE": "run/w.json"}, "CK_WORKER_STATS_FILE") == Path("run/w.json")
    assert stats_path({"CK_WORKER_STATS_FILE": ""}, "CK_WORKER_STATS_FILE") is None
    assert stats_path({}, "CK_WORKER_STATS_FILE") is None
