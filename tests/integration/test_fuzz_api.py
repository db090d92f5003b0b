"""The HTTP API fuzzed from its own OpenAPI document: whatever arrives, no 5xx, and every 4xx is a JSON error body.

Schemathesis generates valid and invalid requests for every operation of the document (examples phase: the
document's examples; coverage phase: boundary values; fuzzing phase: random ones) and sends them to the session's
running API. The responses must also keep to the document (status codes, content types, response schemas).

Four runs:
- without credentials: path and body validation in front of authentication;
- with valid credentials (a tenant's org token and the admin key) and generated ids: someone else's org or a malformed
  id, i.e. authorization;
- the same credentials aimed at the tenant's own org and app: the handlers, the catalog and the queue;
- usage submissions steered to be acceptable (the tenant's app, a model label it prices, a timestamp of today) with
  everything else generated, after which every accepted event must have become exactly one usage item.

The document is built in-process so that pytest can collect one test per operation before the API runs
(schemathesis's lazy `from_fixture` loader fails under pytest 9.2: it sets `Function._nodeid`, which is gone); the
first test proves it is exactly the document the running API serves at /openapi.json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.resource_setup import scan_items
from ingest_api.openapi import build_openapi
from runtime.aws import AwsSettings
from tests.integration.harness import ADMIN_KEY, Pipeline, Tenant, api_client, eventually, provision

# Hundreds of generated requests: `slow`, and not `integration`, so `-m integration` stays about a minute.
pytestmark = pytest.mark.slow

# Per operation and run: enough to reach the validation branches, few enough for the file to take about a minute.
# CK_FUZZ_MAX_EXAMPLES=300 fuzzes harder when hunting.
MAX_EXAMPLES = int(os.environ.get("CK_FUZZ_MAX_EXAMPLES", "30"))
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # real HTTP to real processes: latency is not what is under test
    suppress_health_check=list(HealthCheck),
)
FUZZ_APP_ID = "fuzzed-usage"

schema = schemathesis.openapi.from_dict(build_openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES)


def client_errors_are_json_error_bodies(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx says what went wrong the same way: {"error": {"code": str, "message": str, ...}}."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"{response.status_code} with content-type {content_type!r}"
    body: Any = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not an error body: {body!r}"
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], f"no error code: {body!r}"
    assert isinstance(body["error"].get("message"), str), f"no error message: {body!r}"
    return True


CHECKS = [
    not_a_server_error,
    client_errors_are_json_error_bodies,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def tenant(pipeline: Pipeline) -> Iterator[Tenant]:
    """The tenant the fuzzer aims at: its settings, apps and secrets end up however the fuzzer left them."""
    with api_client(pipeline.base_url) as client:
        yield provision(client)


@pytest.fixture(scope="module")
def credentials(tenant: Tenant) -> dict[str, str]:
    """Both kinds at once: the org's bearer token (good for all its apps) and the admin key (provisioning)."""
    return {**tenant.org_headers(), "X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def usage_tenant(pipeline: Pipeline) -> Iterator[Tenant]:
    """A tenant of its own for the steered usage run, whose model labels no other run can change."""
    with api_client(pipeline.base_url) as client:
        yield provision(client, app_id=FUZZ_APP_ID)


@pytest.fixture(scope="module")
def usage_headers(usage_tenant: Tenant) -> dict[str, str]:
    return usage_tenant.app_headers()


# Request ids of the events the API accepted in the steered usage run, for the check that follows it.
ACCEPTED: set[str] = set()


def test_the_fuzzed_document_is_the_one_the_api_serves(pipeline: Pipeline) -> None:
    served = httpx.get(f"{pipeline.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    document = served.json()
    assert document == json.loads(json.dumps(build_openapi()))
    operations = sum(len(ops) for ops in document["paths"].values())
    # Every operation is fuzzed: none was dropped as unparseable.
    assert sum(isinstance(result, Ok) for result in schema.get_all_operations()) == operations > 0


@schema.parametrize()
@FUZZ_SETTINGS
def test_without_credentials_nothing_is_a_server_error(case: Case[Any], pipeline: Pipeline) -> None:
    case.call_and_validate(base_url=pipeline.base_url, checks=CHECKS, timeout=30)


@schema.parametrize()
@FUZZ_SETTINGS
def test_with_credentials_for_generated_ids_nothing_is_a_server_error(
    case: Case[Any], credentials: dict[str, str], pipeline: Pipeline
) -> None:
    # The generated ids name someone else's org (403 for tokens, 404 or a new org for the admin) or are malformed.
    case.call_and_validate(base_url=pipeline.base_url, headers=credentials, checks=CHECKS, timeout=30)


@schema.parametrize()
@FUZZ_SETTINGS
def test_with_credentials_for_the_own_tenant_nothing_is_a_server_error(
    case: Case[Any], credentials: dict[str, str], tenant: Tenant, pipeline: Pipeline
) -> None:
    # Aimed at the tenant's own org and app the cases get past authorization; bodies, dates and claims stay generated.
    path = case.path_parameters or {}
    if "org_id" in path:
        path["org_id"] = tenant.org_id
    if "app_id" in path:
        path["app_id"] = tenant.app_id
    case.call_and_validate(base_url=pipeline.base_url, headers=credentials, checks=CHECKS, timeout=30)


def _steer(event: Any, now: str) -> None:
    """Make a generated usage event one the org can accept, if it is an object: its label and today's time."""
    if isinstance(event, dict):
        if "timestamp" in event:
            event["timestamp"] = now
        if "model_label" in event:
            event["model_label"] = "economy"


@schema.include(path_regex=r"/usage(/batch)?$").parametrize()
@FUZZ_SETTINGS
def test_usage_that_fits_the_tenant_is_accepted_or_refused_with_a_reason(
    case: Case[Any], usage_tenant: Tenant, usage_headers: dict[str, str], pipeline: Pipeline
) -> None:
    path = case.path_parameters or {}
    path.update(org_id=usage_tenant.org_id, app_id=usage_tenant.app_id)
    now = datetime.now(UTC).isoformat()
    body = case.body
    items = body.get("items") if isinstance(body, dict) else None
    for event in items if isinstance(items, list) else [body]:
        _steer(event, now)
    response = case.call_and_validate(base_url=pipeline.base_url, headers=usage_headers, checks=CHECKS, timeout=30)
    if response.status_code == 202:
        ACCEPTED.add(response.json()["request_id"])
    elif response.status_code == 207:
        ACCEPTED.update(r["request_id"] for r in response.json()["results"] if r["status"] == 202)


def test_every_accepted_fuzzed_event_became_exactly_one_usage_item(
    usage_tenant: Tenant, aws_settings: AwsSettings, pipeline: Pipeline
) -> None:
    if not ACCEPTED:
        pytest.skip("the steered usage run did not run in this session (run the whole file)")
    deserializer = TypeDeserializer()

    def written() -> set[str] | None:
        ids = {
            str(deserializer.deserialize(item["request_id"]))
            for item in scan_items(aws_settings.dynamodb(), aws_settings.names.usage_table)
            if item.get("org_id", {}).get("S") == usage_tenant.org_id
        }
        return ids if ids == ACCEPTED else None

    # The worker prices and writes them; nothing the API accepted may be refused downstream.
    eventually(written, timeout_s=30, interval_s=0.5)
    pipeline.check_alive()
