"""Each process's settings: defaults stated once on the dataclass, the environment overriding, no secret in a repr,
and every variable a process reads listed in the README."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from aggregator import settings as aggregator_settings
from aggregator.settings import AggregatorSettings
from ingest_api import settings as api_settings
from ingest_api.settings import ApiSettings
from runtime.aws import AwsSettings
from runtime.env import InvalidSetting
from workers import settings as worker_settings
from workers.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
PROCESS_PACKAGES = ("runtime", "catalog", "aggregator", "workers", "ingest_api")
SETTINGS = {
    ApiSettings: api_settings.ENVIRONMENT,
    WorkerSettings: worker_settings.ENVIRONMENT,
    AggregatorSettings: aggregator_settings.ENVIRONMENT,
}
BASE_ENV = {"CK_JWT_SECRET": "x" * 48}


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_an_empty_environment_gives_the_dataclass_defaults(cls: type) -> None:
    settings = cls.from_env(BASE_ENV)  # type: ignore[attr-defined]
    configurable = {name for name, _ in SETTINGS[cls].values()}
    for f in fields(cls):
        if f.name in configurable:
            assert getattr(settings, f.name) == f.default, f.name


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_every_variable_sets_an_existing_field(cls: type) -> None:
    names = {f.name for f in fields(cls)}
    assert {name for name, _ in SETTINGS[cls].values()} <= names


def test_the_environment_overrides_and_bad_values_name_their_variable() -> None:
    settings = WorkerSettings.from_env({"CK_WORKER_POLLERS": "7", "CK_WORKER_STATS_FILE": "run/w.json"})
    assert settings.pollers == 7 and settings.stats_file == Path("run/w.json")
    assert WorkerSettings.from_env({"CK_WORKER_POLLERS": ""}).pollers == WorkerSettings.pollers
    with pytest.raises(InvalidSetting, match="CK_WORKER_POLLERS"):
        WorkerSettings.from_env({"CK_WORKER_POLLERS": "many"})
    with pytest.raises(InvalidSetting, match="CK_ACCESS_LOG"):
        ApiSettings.from_env({**BASE_ENV, "CK_ACCESS_LOG": "yes please"})
    assert AwsSettings.from_env({"CK_AWS_MAX_POOL_CONNECTIONS": "9"}).max_pool_connections == 9


def test_no_secret_appears_in_the_settings_repr() -> None:
    jwt_secret, admin_key, ops = "jwt-secret-value-" + "j" * 32, "admin-key-value-" + "a" * 32, "ops-" + "o" * 32
    settings = ApiSettings.from_env({"CK_JWT_SECRET": jwt_secret, "CK_ADMIN_API_KEY": admin_key, "CK_OPS_TOKEN": ops})
    assert (settings.jwt_secret, settings.admin_api_key, settings.ops_token) == (jwt_secret, admin_key, ops)
    for secret in (jwt_secret, admin_key, ops):
        assert secret not in repr(settings)


@pytest.mark.parametrize("variable", ["CK_JWT_SECRET", "CK_ADMIN_API_KEY", "CK_OPS_TOKEN"])
def test_the_api_refuses_to_start_with_a_secret_under_32_bytes(variable: str) -> None:
    with pytest.raises(InvalidSetting, match=variable):
        ApiSettings.from_env({**BASE_ENV, variable: "x" * 31})
    assert ApiSettings.from_env({**BASE_ENV, variable: "x" * 32})
    # Unset: a random JWT secret for this process (strong), and provisioning disabled.
    assert len(ApiSettings.from_env({}).jwt_secret) >= 32
    assert ApiSettings.from_env({}).admin_api_key is None


def variables_read_by_the_processes() -> set[str]:
    found: set[str] = set()
    for package in PROCESS_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            found |= set(re.findall(r"\"(CK_[A-Z0-9_]+)\"", path.read_text()))
    return found


def test_every_variable_the_processes_read_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    variables = variables_read_by_the_processes()
    assert "CK_WORKER_POLLERS" in variables and "CK_ONE_TIME_SECRET_TTL_S" in variables
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert not missing, f"not in the README's configuration table: {missing}"
