"""infra/deploy/template.yaml declares what runtime/resources.py defines, wires the Lambda handlers that exist, lints.

The template is parsed with cfn-lint's own decoder, so !Ref/!Sub/!GetAtt arrive as their long forms (Fn::Sub ...).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode import decode_str

from runtime.resources import (
    DEFAULT_PREFIX,
    DLQ_RETENTION_S,
    MAX_RECEIVE_COUNT,
    QUEUE_RETENTION_S,
    TTL_ATTRIBUTE,
    ResourceNames,
    TableSpec,
    table_specs,
)

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "template.yaml"
# ResourceNames applied to the parameter's placeholder gives exactly the strings the template must !Sub.
NAMES = ResourceNames("${ResourcePrefix}")
# Lambda's advice for SQS sources: the queue's visibility timeout is at least six times the function's timeout.
VISIBILITY_TIMEOUT_FACTOR = 6
STREAM_RETENTION_S = 24 * 3600


@pytest.fixture(scope="module")
def template_text() -> str:
    return TEMPLATE_PATH.read_text()


@pytest.fixture(scope="module")
def template(template_text: str) -> dict[str, Any]:
    decoded, problems = decode_str(template_text)
    assert not problems, problems
    return dict(decoded)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def named(resources: dict[str, Any], kind: str, name_property: str, physical: str) -> tuple[str, dict[str, Any]]:
    """The one resource of this type whose name property is !Sub of the physical name."""
    found = [
        (logical, r["Properties"])
        for logical, r in of_type(resources, kind).items()
        if r["Properties"].get(name_property) == {"Fn::Sub": physical}
    ]
    assert len(found) == 1, f"{kind} named {physical}: {[f[0] for f in found]}"
    return found[0]


def function_using(resources: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    found = [
        (logical, r["Properties"])
        for logical, r in of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == handler
    ]
    assert len(found) == 1, f"functions with handler {handler}: {found}"
    return found[0]


def mapping_of(resources: dict[str, Any], function_logical_id: str) -> dict[str, Any]:
    found = [
        r["Properties"]
        for r in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["FunctionName"] == {"Ref": function_logical_id}
    ]
    assert len(found) == 1
    return dict(found[0])


def test_cfn_lint_reports_no_errors(template_text: str) -> None:
    matches = lint(template_text)
    errors = [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


@pytest.mark.parametrize("spec", table_specs(NAMES), ids=lambda s: s.name.removeprefix("${ResourcePrefix}"))
def test_each_table_of_resources_py_is_declared_alike(resources: dict[str, Any], spec: TableSpec) -> None:
    _, table = named(resources, "AWS::DynamoDB::Table", "TableName", spec.name)
    expected_keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    expected_attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if spec.has_sort_key:
        expected_keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        expected_attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    expected_attributes += [{"AttributeName": index.hash_key, "AttributeType": "S"} for index in spec.indexes]
    assert table["KeySchema"] == expected_keys
    assert table["AttributeDefinitions"] == expected_attributes
    assert table.get("GlobalSecondaryIndexes", []) == [
        {
            "IndexName": index.name,
            "KeySchema": [{"AttributeName": index.hash_key, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
        for index in spec.indexes
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    if spec.stream:
        assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    else:
        assert "StreamSpecification" not in table
    if spec.ttl:
        assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in table


def test_the_default_prefix_is_the_processes_default(template: dict[str, Any]) -> None:
    # A stack deployed with defaults names its tables as the processes do when CK_RESOURCE_PREFIX is unset.
    assert template["Parameters"]["ResourcePrefix"]["Default"] == DEFAULT_PREFIX


def test_no_table_beyond_resources_py(resources: dict[str, Any]) -> None:
    declared = sorted(
        r["Properties"]["TableName"]["Fn::Sub"] for r in of_type(resources, "AWS::DynamoDB::Table").values()
    )
    assert declared == sorted(spec.name for spec in table_specs(NAMES))


def test_queues_have_the_redrive_policy_and_retention_of_resources_py(resources: dict[str, Any]) -> None:
    dlq_id, dlq = named(resources, "AWS::SQS::Queue", "QueueName", NAMES.dead_letter_queue)
    _, queue = named(resources, "AWS::SQS::Queue", "QueueName", NAMES.usage_queue)
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    assert queue["MessageRetentionPeriod"] == QUEUE_RETENTION_S
    assert dlq["MessageRetentionPeriod"] == DLQ_RETENTION_S
    assert "RedrivePolicy" not in dlq


@pytest.mark.parametrize("handler", ["workers.lambda_handler.handler", "aggregator.lambda_handler.handler"])
def test_lambda_handlers_exist_and_find_their_resources_by_prefix(resources: dict[str, Any], handler: str) -> None:
    module, _, attribute = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    _, function = function_using(resources, handler)
    assert function["Environment"]["Variables"]["CK_RESOURCE_PREFIX"] == {"Ref": "ResourcePrefix"}
    assert function["Code"] == {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}


def test_worker_consumes_the_usage_queue_reporting_item_failures(resources: dict[str, Any]) -> None:
    queue_id, queue = named(resources, "AWS::SQS::Queue", "QueueName", NAMES.usage_queue)
    worker_id, worker = function_using(resources, "workers.lambda_handler.handler")
    mapping = mapping_of(resources, worker_id)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= VISIBILITY_TIMEOUT_FACTOR * worker["Timeout"]


def test_aggregator_follows_the_usage_stream_one_batch_per_shard_with_its_shard_id(resources: dict[str, Any]) -> None:
    usage_id, _ = named(resources, "AWS::DynamoDB::Table", "TableName", NAMES.usage_table)
    aggregator_id, _ = function_using(resources, "aggregator.lambda_handler.handler")
    mapping = mapping_of(resources, aggregator_id)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [usage_id, "StreamArn"]}
    # Nothing before the mapping's start goes uncounted: a new mapping reads everything the stream still holds.
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == 1000
    assert mapping["MaximumBatchingWindowInSeconds"] <= 5
    # Lambda names the batch's shard (`shardId`) only with a tumbling window; the guards are per shard.
    assert 0 < mapping["TumblingWindowInSeconds"] <= 900
    # One batch at a time per shard, in shard order: a key's applied position must never pass uncounted records.
    assert mapping["ParallelizationFactor"] == 1


def test_api_runs_on_fargate_with_its_secrets_from_secrets_manager(resources: dict[str, Any]) -> None:
    [task] = of_type(resources, "AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    assert task["Properties"]["RequiresCompatibilities"] == ["FARGATE"]
    assert container["Image"] == {"Ref": "ApiImageUri"}
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["CK_RESOURCE_PREFIX"] == {"Ref": "ResourcePrefix"}
    secrets = {s["Name"]: s["ValueFrom"]["Ref"] for s in container["Secrets"]}
    assert set(secrets) == {"CK_JWT_SECRET", "CK_ADMIN_API_KEY", "CK_OPS_TOKEN"}
    assert all(resources[logical]["Type"] == "AWS::SecretsManager::Secret" for logical in secrets.values())
    # The API refuses secrets under 32 bytes.
    assert all(
        resources[logical]["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32 for logical in secrets.values()
    )
    assert not set(secrets) & set(environment)
    [service] = of_type(resources, "AWS::ECS::Service").values()
    [balanced] = service["Properties"]["LoadBalancers"]
    assert resources[balanced["TargetGroupArn"]["Ref"]]["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"


def statements(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for logical, role in of_type(resources, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            found.extend((logical, s) for s in policy["PolicyDocument"]["Statement"])
    return found


def test_iam_statements_name_actions_and_resources_without_wildcards(resources: dict[str, Any]) -> None:
    for role, statement in statements(resources):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a for a in actions), (role, actions)
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in targets, (role, statement)


def test_function_roles_touch_only_their_own_tables(resources: dict[str, Any]) -> None:
    def granted(role: str) -> dict[str, set[str]]:
        by_table: dict[str, set[str]] = {}
        for logical, statement in statements(resources):
            resource = statement["Resource"]
            if logical != role or "Fn::GetAtt" not in resource:
                continue
            target = resource["Fn::GetAtt"][0]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            by_table.setdefault(target, set()).update(actions)
        return by_table

    tables = {
        r["Properties"]["TableName"]["Fn::Sub"]: logical
        for logical, r in of_type(resources, "AWS::DynamoDB::Table").items()
    }
    worker = granted(function_using(resources, "workers.lambda_handler.handler")[1]["Role"]["Fn::GetAtt"][0])
    assert {t: a for t, a in worker.items() if t in tables.values()} == {
        tables[NAMES.config_table]: {"dynamodb:GetItem"},
        tables[NAMES.usage_table]: {"dynamodb:PartiQLInsert"},
    }
    aggregator = granted(function_using(resources, "aggregator.lambda_handler.handler")[1]["Role"]["Fn::GetAtt"][0])
    assert {t: a for t, a in aggregator.items() if t in tables.values()} == {
        tables[NAMES.aggregates_table]: {"dynamodb:UpdateItem", "dynamodb:GetItem"},
        tables[NAMES.checkpoints_table]: {"dynamodb:UpdateItem", "dynamodb:GetItem"},
    }


# -- transport security and the edge ---------------------------------------------------------------------------------


def test_nothing_reaches_the_api_over_plain_http(resources: dict[str, Any]) -> None:
    listeners = of_type(resources, "AWS::ElasticLoadBalancingV2::Listener")
    for logical, listener in listeners.items():
        properties = listener["Properties"]
        if properties["Protocol"] == "HTTPS":
            assert "Condition" not in listener, logical  # HTTPS is not optional
            assert properties["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
            continue
        assert properties["Protocol"] == "HTTP"
        assert [a["Type"] for a in properties["DefaultActions"]] == ["redirect"], logical
        assert properties["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert sum(listener["Properties"]["Protocol"] == "HTTPS" for listener in listeners.values()) == 1
    assert not of_type(resources, "AWS::ElasticLoadBalancingV2::ListenerRule")


def test_https_answers_carry_hsts(resources: dict[str, Any]) -> None:
    [https] = [
        r["Properties"]
        for r in of_type(resources, "AWS::ElasticLoadBalancingV2::Listener").values()
        if r["Properties"]["Protocol"] == "HTTPS"
    ]
    attributes = {a["Key"]: a["Value"] for a in https["ListenerAttributes"]}
    hsts = attributes["routing.http.response.strict_transport_security.header_value"]
    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 31_536_000


def test_every_queue_refuses_requests_without_tls(resources: dict[str, Any]) -> None:
    queues = set(of_type(resources, "AWS::SQS::Queue"))
    covered: set[str] = set()
    for policy in of_type(resources, "AWS::SQS::QueuePolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        denies_plain = any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )
        if denies_plain:
            covered |= {q["Ref"] for q in policy["Properties"]["Queues"]}
    assert covered == queues


def test_the_load_balancer_writes_access_logs_to_a_private_bucket(resources: dict[str, Any]) -> None:
    [balancer] = of_type(resources, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    bucket = resources[attributes["access_logs.s3.bucket"]["Ref"]]
    assert bucket["Type"] == "AWS::S3::Bucket"
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    assert balancer["DependsOn"] == "AccessLogBucketPolicy"


def test_a_waf_rate_rule_guards_the_auth_routes_per_ip(resources: dict[str, Any]) -> None:
    [(acl_id, acl)] = of_type(resources, "AWS::WAFv2::WebACL").items()
    [association] = of_type(resources, "AWS::WAFv2::WebACLAssociation").values()
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert resources[association["Properties"]["ResourceArn"]["Ref"]]["Type"] == (
        "AWS::ElasticLoadBalancingV2::LoadBalancer"
    )
    rate_rules = [r for r in acl["Properties"]["Rules"] if "RateBasedStatement" in r["Statement"]]
    [auth] = [
        r["Statement"]["RateBasedStatement"]
        for r in rate_rules
        if r["Statement"]["RateBasedStatement"]["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/auth/"
    ]
    assert auth["AggregateKeyType"] == "IP"
    assert auth["ScopeDownStatement"]["ByteMatchStatement"]["PositionalConstraint"] == "STARTS_WITH"
    assert all("Block" in r["Action"] for r in rate_rules)


def test_a_batch_the_aggregator_cannot_apply_is_described_and_skipped_within_the_streams_retention(
    resources: dict[str, Any],
) -> None:
    aggregator_id, function = function_using(resources, "aggregator.lambda_handler.handler")
    mapping = mapping_of(resources, aggregator_id)
    # Bounded: skipped (and missing until reconcile) rather than holding its shard until the records are trimmed.
    assert 60 <= mapping["MaximumRecordAgeInSeconds"] < STREAM_RETENTION_S
    failures = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert resources[failures]["Type"] == "AWS::SQS::Queue"
    granted = [
        s
        for logical, s in statements(resources)
        if logical == function["Role"]["Fn::GetAtt"][0] and s["Resource"] == {"Fn::GetAtt": [failures, "Arn"]}
    ]
    assert [s["Action"] for s in granted] == ["sqs:SendMessage"]


def alarms(resources: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in of_type(resources, "AWS::CloudWatch::Alarm").values()]


@pytest.mark.parametrize(
    ("namespace", "metric", "target"),
    [
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", NAMES.usage_queue),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", NAMES.dead_letter_queue),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "${ResourcePrefix}aggregator-failures"),
        ("AWS/Lambda", "IteratorAge", "aggregator.lambda_handler.handler"),
        ("AWS/Lambda", "Errors", "aggregator.lambda_handler.handler"),
        ("AWS/Lambda", "Errors", "workers.lambda_handler.handler"),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer"),
    ],
)
def test_each_way_usage_can_go_uncounted_has_an_alarm_on_the_alarm_topic(
    resources: dict[str, Any], namespace: str, metric: str, target: str
) -> None:
    if namespace == "AWS/SQS":
        logical, _ = named(resources, "AWS::SQS::Queue", "QueueName", target)
        dimension = {"Name": "QueueName", "Value": {"Fn::GetAtt": [logical, "QueueName"]}}
    elif namespace == "AWS/Lambda":
        logical, _ = function_using(resources, target)
        dimension = {"Name": "FunctionName", "Value": {"Ref": logical}}
    else:
        dimension = {"Name": "LoadBalancer", "Value": {"Fn::GetAtt": [target, "LoadBalancerFullName"]}}
    [topic] = of_type(resources, "AWS::SNS::Topic")
    found = [
        a
        for a in alarms(resources)
        if (a["Namespace"], a["MetricName"]) == (namespace, metric) and a["Dimensions"] == [dimension]
    ]
    assert len(found) == 1, (namespace, metric, target)
    assert found[0]["AlarmActions"] == [{"Ref": topic}]
    assert found[0]["TreatMissingData"] == "notBreaching"
