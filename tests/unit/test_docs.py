"""docs/integration-testing.md says what the code does: its template is the suite's test, its names and seed data are
the defaults. (tests/integration/test_docs_walkthrough.py runs its commands.)"""

from __future__ import annotations

import re
from pathlib import Path

from infra.seed import SEED_APP, SEED_APP_ID, SEED_ORG, SEED_ORG_ID
from runtime.resources import DEFAULT_PREFIX, ResourceNames, table_specs

REPO = Path(__file__).resolve().parents[2]
GUIDE = (REPO / "docs" / "integration-testing.md").read_text()
TEMPLATE_TEST = REPO / "tests" / "integration" / "test_guide_template.py"


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE, flags=re.MULTILINE | re.DOTALL)


def test_the_guides_template_is_the_suites_test_character_for_character() -> None:
    source = TEMPLATE_TEST.read_text()
    template = source.split("# -- the template ")[1].split("\n", 1)[1].split("# -- end of the template")[0]
    # The formatter keeps two blank lines before the closing marker; the guide's block ends with the code.
    template = template.rstrip("\n") + "\n"
    assert fenced("python") == [template]


def test_every_table_and_queue_the_guide_names_exists_under_the_default_prefix() -> None:
    names = ResourceNames(DEFAULT_PREFIX)
    defined = {spec.name for spec in table_specs(names)} | {names.usage_queue, names.dead_letter_queue}
    mentioned = set(re.findall(r"bedrock-cost-keeper-[a-z-]*[a-z]", GUIDE))
    assert mentioned <= defined, mentioned - defined
    # And the guide's table lists every table there is.
    assert {spec.name for spec in table_specs(names)} <= mentioned


def dollars(micros: int) -> str:
    return f"${micros / 1_000_000:.2f}"


def test_the_seeded_data_is_what_the_guide_lists() -> None:
    org_quotas = ", ".join(f"{label} {dollars(q)}" for label, q in SEED_ORG.daily_quotas_usd_micros.items())
    app_quotas = ", ".join(f"{label} {dollars(q)}" for label, q in SEED_APP.daily_quotas_usd_micros.items())
    assert f"- Org id: `{SEED_ORG_ID}`" in GUIDE
    assert f"- Client id: `org-{SEED_ORG_ID}`" in GUIDE
    assert f"- Models: {', '.join(SEED_ORG.models)} (" in GUIDE
    assert f"- Daily quotas: {org_quotas}\n" in GUIDE
    assert f"- App id: `{SEED_APP_ID}`" in GUIDE
    assert f"- Client id: `org-{SEED_ORG_ID}-app-{SEED_APP_ID}`" in GUIDE
    assert SEED_APP.model_ordering is not None
    assert f"- Models: {', '.join(SEED_APP.model_ordering)} (" in GUIDE
    assert f"- Daily quotas: {app_quotas}\n" in GUIDE
