"""`chalice package --merge-template deploy/resources.json`: the template the deployment runs.

Packaged once for the module (the first run downloads the Lambda wheels into
.chalice/deployments; later runs reuse them). cfn-lint checks the whole merged template.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import MIGRATIONS_DIR, PROJECT_ROOT, Settings
from tests.conftest import FAKE_AWS_ENV

BIN = Path(sys.executable).parent
FUNCTIONS = (
    "APIHandler",
    "ApiKeyAuthorizer",
    "Migrate",
    "BackfillPlanner",
    "BackfillPlannerCrypto",
    "BackfillWorker",
    "AuditArchiver",
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "build"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "BACKFILL_", "AUDIT_", "DATABASE_", "POLYGON_"))
    }
    env.update(FAKE_AWS_ENV)
    subprocess.run(
        [
            str(BIN / "chalice"),
            "package",
            "--stage",
            "prod",
            "--merge-template",
            "deploy/resources.json",
            str(out),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="module")
def template(package: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((package / "sam.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def properties(resources: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = resources[name]["Properties"]
    return found


def test_every_function_is_generated_and_merged(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        assert resources[name]["Type"] == "AWS::Serverless::Function", name


def test_the_queue_redrives_to_the_dead_letter_queue(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = resources["BackfillQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert resources["BackfillDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    redrive = queue["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["BackfillDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 5


def test_the_visibility_timeout_outlasts_the_worker(resources: dict[str, Any]) -> None:
    visibility = properties(resources, "BackfillQueue")["VisibilityTimeout"]
    worker_timeout = properties(resources, "BackfillWorker")["Timeout"]

    assert worker_timeout == 300
    assert visibility >= worker_timeout


def test_the_worker_reports_batch_item_failures_from_the_queue(resources: dict[str, Any]) -> None:
    worker = properties(resources, "BackfillWorker")
    (source,) = worker["Events"].values()

    assert source["Type"] == "SQS"
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["Queue"] == {"Fn::Sub": "${BackfillQueue.Arn}"}
    assert source["Properties"]["BatchSize"] == Settings.from_env({}).backfill_worker_batch_size
    assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 10}
    assert worker["ReservedConcurrentExecutions"] == 10


def test_schedules_come_from_the_settings(resources: dict[str, Any]) -> None:
    defaults = Settings.from_env({})
    expected = {
        "BackfillPlanner": defaults.backfill_stocks_schedule,
        "BackfillPlannerCrypto": defaults.backfill_crypto_schedule,
        "AuditArchiver": defaults.audit_archive_schedule,
    }
    for name, schedule in expected.items():
        (event,) = properties(resources, name)["Events"].values()
        assert event == {"Type": "Schedule", "Properties": {"Schedule": schedule}}, name


def test_every_function_gets_the_secrets_queue_and_bucket(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        variables = properties(resources, name)["Environment"]["Variables"]
        assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}, name
        assert variables["POLYGON_API_KEY_SECRET_ARN"] == {"Ref": "PolygonApiKeySecretArn"}, name
        assert variables["BACKFILL_QUEUE_NAME"] == {"Fn::GetAtt": ["BackfillQueue", "QueueName"]}, (
            name
        )
        assert variables["AUDIT_ARCHIVE_BUCKET"] == {"Ref": "AuditArchiveBucket"}, name
        assert "DATABASE_URL" not in variables, name
        assert "POLYGON_API_KEY" not in variables, name


def test_the_role_reads_only_the_two_secrets(resources: dict[str, Any]) -> None:
    (policy,) = properties(resources, "DefaultRole")["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    assert statements["Secrets"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert statements["Secrets"]["Resource"] == [
        {"Ref": "DatabaseSecretArn"},
        {"Ref": "PolygonApiKeySecretArn"},
    ]
    assert statements["AuditArchive"]["Resource"] == {
        "Fn::Sub": "${AuditArchiveBucket.Arn}/audit/*"
    }


def test_functions_run_in_the_vpc(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        vpc = properties(resources, name)["VpcConfig"]
        assert len(vpc["SubnetIds"]) == 2, name
        assert len(vpc["SecurityGroupIds"]) == 1, name


def test_the_archive_bucket_is_private_and_encrypted(resources: dict[str, Any]) -> None:
    bucket = resources["AuditArchiveBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    assert bucket["DeletionPolicy"] == "Retain"
    block = bucket["Properties"]["PublicAccessBlockConfiguration"]
    assert all(block.values())
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_alarms_watch_the_dead_letter_queue_the_worker_and_authorization(
    resources: dict[str, Any],
) -> None:
    alarms = {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    dlq = alarms["BackfillDeadLetterAlarm"]
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BackfillDeadLetterQueue", "QueueName"]}}
    ]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    errors = alarms["BackfillWorkerErrorsAlarm"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "BackfillWorker"}}]
    authorizer = alarms["AuthorizerFailuresAlarm"]
    assert authorizer["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "ApiKeyAuthorizer"}}
    ]
    assert authorizer["Threshold"] == {"Ref": "AuthFailureThreshold"}
    assert alarms["ApiAuthFailuresAlarm"]["MetricName"] == "AuthFailures"
    assert alarms["BackfillFailuresAlarm"]["MetricName"] == "BackfillFailures"


def test_the_zip_holds_the_migrations_at_its_root(package: Path) -> None:
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        names = set(archive.namelist())
        shipped = {name: archive.read(name) for name in names if name.startswith("migrations/")}
    expected = {
        f"migrations/{path.name}": path.read_bytes() for path in MIGRATIONS_DIR.glob("*.sql")
    }

    assert expected
    assert shipped == expected
    assert "app.py" in names
    assert "chalicelib/ops/worker.py" in names


def test_the_runtime_is_the_packaging_interpreter(resources: dict[str, Any]) -> None:
    # Chalice builds for the Python it runs on; docs/DEPLOYMENT.md asks for 3.12 or newer.
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert {properties(resources, name)["Runtime"] for name in FUNCTIONS} == {runtime}


def test_the_template_passes_cfn_lint(package: Path) -> None:
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(package / "sam.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_answers_its_own_refusals_in_the_one_error_body(
    resources: dict[str, Any],
) -> None:
    responses = {
        resource["Properties"]["ResponseType"]: resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::ApiGateway::GatewayResponse"
    }

    assert set(responses) == {"UNAUTHORIZED", "ACCESS_DENIED", "DEFAULT_4XX", "DEFAULT_5XX"}
    for properties in responses.values():
        assert properties["RestApiId"] == {"Ref": "RestAPI"}
        template = properties["ResponseTemplates"]["application/json"]
        assert template.startswith('{"error": {"code": "')
    unauthorized = json.loads(responses["UNAUTHORIZED"]["ResponseTemplates"]["application/json"])
    assert unauthorized == {
        "error": {
            "code": "unauthorized",
            "message": "a valid API key is required: Authorization: Bearer mdw_...",
        }
    }
    assert responses["UNAUTHORIZED"]["StatusCode"] == "401"
    assert responses["ACCESS_DENIED"]["StatusCode"] == "403"
