"""Seeded client secrets kept for local scripts: `.run/credentials.json`, one section per resource prefix.

A secret is shown once, when it is created; this file is the local convenience that `costkeeper run`, the README's
"Try it" and the integration-testing guide read it back from. Sections are keyed by resource prefix, so seeding a
second prefix into the same run folder adds a section instead of replacing the first prefix's secrets:

    {"bedrock-cost-keeper-": {"org-550e8400-...": "secret", "org-550e8400-...-app-test-app": "secret"}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    return stored if isinstance(stored, dict) else {}


def load(path: Path, prefix: str) -> dict[str, str]:
    """The secrets saved for this prefix (none when the file or the section is missing)."""
    section = _read(path).get(prefix)
    return {str(k): str(v) for k, v in section.items()} if isinstance(section, dict) else {}


def save(path: Path, prefix: str, secrets: Mapping[str, str]) -> None:
    """Add or replace these client ids' secrets in this prefix's section; other prefixes' sections stay as they are."""
    stored = _read(path)
    section = stored.get(prefix)
    stored[prefix] = {**(section if isinstance(section, dict) else {}), **secrets}
    _write(path, stored)


def forget(path: Path, prefix: str) -> None:
    """Drop this prefix's section: its secrets stopped working when its configuration was cleared."""
    stored = _read(path)
    if stored.pop(prefix, None) is not None:
        _write(path, stored)


def _write(path: Path, stored: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    # Created owner-only before anything is written into it: the file holds live secrets.
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(stored, indent=2) + "\n")
    # Renamed into place, so a reader never sees half a file.
    staging.replace(path)
