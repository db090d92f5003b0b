"""docs/integration-testing.md followed as a newcomer would: every shell command it shows, in order, in one shell.

The commands run as printed, with two substitutions so that a developer's own emulator is left alone: DynamoDB
Local's port 8000 becomes a port of this test's, and `.run/` its own run folder. Commands that run the test suite
run with `--collect-only` (PYTEST_ADDOPTS): the suite cannot run itself inside itself, and the session around this
test runs those tests for real; collecting still proves that each command selects the tests the page says it does.
Then the outputs are checked against what the page promises: secrets shown once, data kept across a restart, the
org item at sk CONFIG, a clean seeded state after reset.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.processes import child_environment
from infra.seed import SEED_ORG_ID
from runtime.aws import ENDPOINT_VARIABLES
from runtime.resources import DEFAULT_PREFIX
from tests.integration.harness import REPO

# Minutes of CLI calls and suite collections: `slow`, and not `integration`, so `-m integration` stays about a minute.
pytestmark = pytest.mark.slow

GUIDE = REPO / "docs" / "integration-testing.md"
MARKER = "@@@ "
SINGLE_TEST = "TestUsageSubmissionIntegration::test_submit_single_usage_to_db"


def guide_commands() -> list[str]:
    """The shell commands of the page's sh blocks, continuation lines joined, in order."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), flags=re.MULTILINE | re.DOTALL):
        for command in re.sub(r"\\\n\s*", "", block).splitlines():
            if command.strip():
                commands.append(command.strip())
    return commands


def shell_script(commands: list[str], dynamodb_port: int, run_dir: Path) -> str:
    lines = ["set -eo pipefail"]
    for command in commands:
        local = command.replace("localhost:8000", f"localhost:{dynamodb_port}").replace(" :8000", f" :{dynamodb_port}")
        local = local.replace(".run/", f"{run_dir}/")
        # On a line of its own even after output without a final newline (curl's).
        lines += [f"printf '\\n%s\\n' {shlex.quote(MARKER + command)}", local]
    return "\n".join(lines) + "\n"


def outputs(stdout: str) -> list[tuple[str, str]]:
    """(command, what it printed) in order of execution."""
    runs: list[tuple[str, str]] = []
    for line in stdout.splitlines(keepends=True):
        if line.startswith(MARKER):
            runs.append((line[len(MARKER) :].rstrip("\n"), ""))
        elif runs:
            runs[-1] = (runs[-1][0], runs[-1][1] + line)
    return runs


def output_of(runs: list[tuple[str, str]], command: str, occurrence: int = 0) -> str:
    found = [out for cmd, out in runs if cmd.split("  #")[0].strip() == command]
    assert len(found) > occurrence, f"{command!r} ran {len(found)} time(s)"
    return found[occurrence]


@pytest.mark.timeout(900)
def test_every_command_of_the_guide_does_what_it_says(tmp_path: Path) -> None:
    commands = guide_commands()
    dynamodb_port = int(os.environ.get("CK_TEST_DYNAMODB_PORT", "18000")) + 200
    sqs_port = int(os.environ.get("CK_TEST_SQS_PORT", "19324")) + 200
    run_dir = tmp_path / "run"
    env = child_environment(
        {
            "CK_DYNAMODB_PORT": str(dynamodb_port),
            "CK_SQS_PORT": str(sqs_port),
            "CK_RUN_DIR": str(run_dir),
            "PYTEST_ADDOPTS": "--collect-only -qq -p no:cacheprovider",
        }
    )
    # As on a newcomer's machine: the default prefix, no endpoints, no AWS credentials of the session's.
    for name in [*ENDPOINT_VARIABLES.values(), "CK_RESOURCE_PREFIX", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]:
        env.pop(name, None)
    if shutil.which("aws") is None:
        # The AWS CLI is optional ("if you have it"); without it its commands are reported, not run.
        commands = [f"echo 'no AWS CLI here: not run: {c}'" if c.startswith("aws ") else c for c in commands]
    try:
        done = subprocess.run(
            ["bash", "-c", shell_script(commands, dynamodb_port, run_dir)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
    finally:
        subprocess.run(
            [str(REPO / ".venv" / "bin" / "costkeeper"), "stop", "--drain-timeout", "0"],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=False,
        )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    runs = outputs(done.stdout)
    assert [cmd for cmd, _ in runs] == commands, "not every command ran"

    # Quick start: the secrets are shown once and saved under the prefix.
    setup = output_of(runs, "./scripts/dynamodb.sh setup")
    assert setup.count("(shown once)") == 2, setup
    assert f'under "{DEFAULT_PREFIX}"' in setup
    # The suite commands select what the page says: integration tests, one file, one test.
    integration = output_of(runs, "pytest tests/integration -v -m integration")
    assert f"test_usage_integration.py::{SINGLE_TEST}" in integration
    assert "test_faults.py" not in integration and "test_fuzz_api.py" not in integration
    assert "test_faults.py" in output_of(runs, "pytest -m slow -v")
    one = output_of(runs, f"pytest tests/integration/test_usage_integration.py::{SINGLE_TEST} -v")
    assert re.search(r"^1 test collected", one, flags=re.MULTILINE), one
    assert (REPO / "htmlcov" / "index.html").exists()

    # Step by step after setup: the org and app exist, so seed shows no secret.
    assert output_of(runs, "./scripts/dynamodb.sh seed").count("(exists; secret unchanged)") == 2
    assert "6 of 6 tables, 2 of 2 queues" in output_of(runs, "./scripts/dynamodb.sh status")
    # The configuration survived the restart: clear found and deleted the org and the app.
    restarted = output_of(runs, "./scripts/dynamodb.sh status", 1)
    assert re.search(r"^resources\s+6 of 6 tables, 2 of 2 queues", restarted, flags=re.MULTILINE), restarted
    assert f"cleared 2 items from {DEFAULT_PREFIX}config" in output_of(runs, "./scripts/dynamodb.sh clear")
    # reset: a clean seeded state with new secrets; seeding again changes nothing.
    assert output_of(runs, "./scripts/dynamodb.sh reset").count("(shown once)") == 2
    assert output_of(runs, "./scripts/dynamodb.sh seed", 1).count("(exists; secret unchanged)") == 2
    config = output_of(runs, f"./scripts/dynamodb.sh scan {DEFAULT_PREFIX}config")
    assert f'"pk": "ORG#{SEED_ORG_ID}"' in config and '"sk": "CONFIG"' in config and '"sk": "APP#test-app"' in config
    assert "(0 items from" in output_of(runs, f"./scripts/dynamodb.sh scan {DEFAULT_PREFIX}usage")
    # The CI steps against the running emulator, and the AWS CLI's get-item finds the org at sk CONFIG.
    assert "table bedrock-cost-keeper-usage: exists" in output_of(runs, "python scripts/init_local_dynamodb.py init")
    if shutil.which("aws") is not None:
        get_item = next(out for cmd, out in runs if cmd.startswith("aws dynamodb get-item"))
        assert '"S": "CONFIG"' in get_item and "Test Org" in get_item
    assert "java" in output_of(runs, "lsof -i :8000")
