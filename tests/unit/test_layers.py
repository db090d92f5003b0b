"""The packages' layering: each imports only from the floors below it (README, "Architecture").

runtime is the ground floor; catalog the shared vocabulary; then the pipeline's stages in the order their contracts
run (the aggregator owns the usage item the worker writes, the worker owns the message the API writes); operator
tooling (infra) and the benchmark sit on top. A process never imports operator tooling.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLOORS = ["runtime", "catalog", "aggregator", "workers", "ingest_api", "infra", "bench"]


def project_imports(path: Path) -> set[str]:
    """The top-level project packages a module imports, at run time or for type checking alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & set(FLOORS)


@pytest.mark.parametrize("package", FLOORS)
def test_no_package_imports_from_a_floor_above_its_own(package: str) -> None:
    allowed = set(FLOORS[: FLOORS.index(package) + 1])
    offenders = {
        str(path.relative_to(REPO)): sorted(project_imports(path) - allowed)
        for path in sorted((REPO / package).rglob("*.py"))
        if project_imports(path) - allowed
    }
    assert not offenders, f"imports from a floor above {package}: {offenders}"


def test_the_api_does_not_pull_in_the_shard_reader() -> None:
    # /metrics reads the aggregator's lag through aggregator/backlog.py, not through the consumer that follows shards.
    for path in (REPO / "ingest_api").rglob("*.py"):
        assert "aggregator.consumer" not in path.read_text(), path


def test_the_client_package_stands_alone() -> None:
    # Applications install it beside their own code: it may depend on httpx, never on the service's packages.
    for path in (REPO / "costkeeper_client").rglob("*.py"):
        assert not project_imports(path), path
