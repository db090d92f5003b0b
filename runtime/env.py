"""Reading a process's settings from the environment.

Each settings dataclass states its defaults once, on its fields; the environment only overrides them. A variable
that is set but cannot be parsed stops the process at start-up with its name, rather than a bare ValueError later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Parse = Callable[[str], Any]


class InvalidSetting(ValueError):
    """An environment variable is set to something its setting cannot take."""


def path(raw: str) -> Path:
    return Path(raw)


def overrides(env: Mapping[str, str], variables: Mapping[str, tuple[str, Parse]]) -> dict[str, Any]:
    """{field: parsed value} for every variable that is set and not empty; unset ones keep the field's default."""
    values: dict[str, Any] = {}
    for variable, (field_name, parse) in variables.items():
        raw = env.get(variable)
        if not raw:
            continue
        try:
            values[field_name] = parse(raw)
        except ValueError as exc:
            raise InvalidSetting(f"{variable}={raw!r}: {exc}") from exc
    return values
