"""`chalice package --merge-template deploy/resources.json`: the template the deployment runs.

Packaged once for the module (the first run downloads the Lambda wheels into
.chalice/deployments; later runs reuse them). cfn-lint checks the whole merged template.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import MIGRATIONS_DIR, PROJECT_ROOT, Settings
from chalicelib.keys import tokens
from devtools.template_lint import transform
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
        assert variables["DATABASE_HOST"] == {
            "Fn::If": [
                "UseRdsProxy",
                {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]},
                {"Fn::If": ["HasDatabaseHost", {"Ref": "DatabaseHost"}, {"Ref": "AWS::NoValue"}]},
            ]
        }, name
        assert variables["DATABASE_NAME"] == {
            "Fn::If": ["HasDatabaseName", {"Ref": "DatabaseName"}, {"Ref": "AWS::NoValue"}]
        }, name
        assert "DATABASE_URL" not in variables, name
        assert "POLYGON_API_KEY" not in variables, name


def test_functions_run_in_the_subnets_and_groups_the_stack_is_given(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for name in FUNCTIONS:
        assert properties(resources, name)["VpcConfig"] == {
            "SubnetIds": {"Ref": "SubnetIds"},
            "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
        }, name
    assert template["Parameters"]["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert template["Parameters"]["SecurityGroupIds"]["Type"] == "List<AWS::EC2::SecurityGroup::Id>"
    # No network of one account committed in the project's configuration.
    config = json.loads((PROJECT_ROOT / ".chalice" / "config.json").read_text())
    for stage in config["stages"].values():
        assert "subnet_ids" not in stage
        assert "security_group_ids" not in stage


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


@pytest.fixture(scope="module")
def cloudformation(template: dict[str, Any], package: Path) -> Path:
    """The SAM transform's output, as CloudFormation would deploy it."""
    path = package / "cloudformation.json"
    path.write_text(json.dumps(transform(template)))
    return path


def test_the_transformed_template_passes_cfn_lint(cloudformation: Path) -> None:
    # Only here can cfn-lint see what SAM generates, e.g. W3660: a gateway response outside the
    # REST API's body, which a later deployment of the body drops.
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(cloudformation)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_responses_are_deployed_with_the_api_body(cloudformation: Path) -> None:
    resources = json.loads(cloudformation.read_text())["Resources"]
    types = {resource["Type"] for resource in resources.values()}
    body = resources["RestAPI"]["Properties"]["Body"]

    assert "AWS::ApiGateway::GatewayResponse" not in types
    assert set(body["x-amazon-apigateway-gateway-responses"]) == set(GATEWAY_RESPONSES)


def test_the_transform_keeps_each_resources_reasoned_suppressions(
    resources: dict[str, Any], cloudformation: Path
) -> None:
    # make template-lint runs checkov on the transformed template too; the suppressions must
    # reach the resources SAM generates, or the checks would fail there.
    transformed = json.loads(cloudformation.read_text())["Resources"]

    assert transformed["APIHandler"]["Type"] == "AWS::Lambda::Function"
    assert transformed["APIHandler"]["Metadata"] == resources["APIHandler"]["Metadata"]
    assert transformed["RestAPI"]["Type"] == "AWS::ApiGateway::RestApi"
    assert transformed["RestAPI"]["Metadata"] == resources["RestAPI"]["Metadata"]


# API Gateway's own answers: response type → (status, code); None keeps the gateway's status.
GATEWAY_RESPONSES = {
    "UNAUTHORIZED": (401, "unauthorized"),
    "ACCESS_DENIED": (403, "forbidden"),
    "AUTHORIZER_FAILURE": (503, "service_unavailable"),
    "MISSING_AUTHENTICATION_TOKEN": (404, "not_found"),
    "RESOURCE_NOT_FOUND": (404, "not_found"),
    "THROTTLED": (429, "rate_limited"),
    "REQUEST_TOO_LARGE": (413, "payload_too_large"),
    "DEFAULT_4XX": (None, "gateway_refused"),
    "DEFAULT_5XX": (None, "gateway_error"),
}


def api_body(resources: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = properties(resources, "RestAPI")["DefinitionBody"]
    return found


def render(template: str) -> Any:
    """A gateway response template as API Gateway fills it in: `messageString` is a quoted
    JSON string, the request id a bare value inside quotes."""
    filled = template.replace("$context.error.messageString", '"Missing Authentication Token"')
    return json.loads(filled.replace("$context.requestId", "c0ffee-1"))


def test_every_gateway_response_is_the_one_error_body(resources: dict[str, Any]) -> None:
    responses = api_body(resources)["x-amazon-apigateway-gateway-responses"]

    assert set(responses) == set(GATEWAY_RESPONSES)
    for response_type, (status, code) in GATEWAY_RESPONSES.items():
        response = responses[response_type]
        assert response.get("statusCode") == status, response_type
        assert (
            response["responseParameters"]["gatewayresponse.header.Content-Type"]
            == "'application/json'"
        )
        body = render(response["responseTemplates"]["application/json"])
        assert set(body) == {"error"}, response_type
        assert body["error"]["code"] == code, response_type
        assert body["error"]["details"] == {"request_id": "c0ffee-1"}, response_type
        assert body["error"]["message"], response_type


def test_an_authorizer_that_cannot_check_keys_is_503_not_401(resources: dict[str, Any]) -> None:
    response = api_body(resources)["x-amazon-apigateway-gateway-responses"]["AUTHORIZER_FAILURE"]

    assert response["statusCode"] == 503
    assert response["responseParameters"]["gatewayresponse.header.Retry-After"] == "'5'"
    assert render(response["responseTemplates"]["application/json"]) == {
        "error": {
            "code": "service_unavailable",
            "message": "the API key could not be checked right now; retry shortly",
            "details": {"request_id": "c0ffee-1"},
        }
    }


def test_the_gateway_refuses_what_cannot_be_a_key_before_the_authorizer(
    resources: dict[str, Any],
) -> None:
    authorizer = api_body(resources)["securityDefinitions"]["api_key_authorizer"]
    expression = authorizer["x-amazon-apigateway-authorizer"]["identityValidationExpression"]
    body_length = tokens.KEY_LENGTH - len(tokens.PREFIX)

    # The scheme is case-insensitive, as the authorizer reads it; the key is the format of
    # chalicelib/keys/tokens.py, so a change of format changes this test's expectation.
    assert expression == f"^[Bb][Ee][Aa][Rr][Ee][Rr] {tokens.PREFIX}[0-9A-Za-z]{{{body_length}}}$"
    assert body_length == 49
    key = tokens.generate_key()
    for accepted in (f"Bearer {key}", f"bearer {key}", f"BEARER {key}"):
        assert re.fullmatch(expression, accepted), accepted
    for refused in (key, f"Bearer {key}x", f"Bearer {key[:-1]}", f"Bearer {key[:-1]}-", "Basic x"):
        assert not re.fullmatch(expression, refused), refused
    assert authorizer["x-amazon-apigateway-authorizer"]["authorizerResultTtlInSeconds"] == 300


def test_the_stage_is_throttled_and_writes_json_access_logs(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    api = properties(resources, "RestAPI")

    assert api["MethodSettings"] == [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        }
    ]
    assert template["Parameters"]["ApiThrottlingRateLimit"]["Default"] == 100
    assert template["Parameters"]["ApiThrottlingBurstLimit"]["Default"] == 50
    assert api["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    line = json.loads(api["AccessLogSetting"]["Format"])
    assert line["request_id"] == "$context.requestId"
    assert line["key_id"] == "$context.authorizer.key_id"
    assert line["status"] == "$context.status"
    assert line["latency_ms"] == "$context.responseLatency"
    assert "$context.authorizer.principalId" not in api["AccessLogSetting"]["Format"]
    assert api["TracingEnabled"] == {"Fn::If": ["TracingOn", True, False]}


def test_reserved_concurrency_bounds_the_database_connections(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    reserved = {
        name: properties(resources, name)["ReservedConcurrentExecutions"] for name in FUNCTIONS
    }
    parameters = template["Parameters"]

    assert reserved == {
        "APIHandler": {"Ref": "ApiHandlerReservedConcurrency"},
        "ApiKeyAuthorizer": {"Ref": "AuthorizerReservedConcurrency"},
        "Migrate": 1,
        "BackfillPlanner": 1,
        "BackfillPlannerCrypto": 1,
        "BackfillWorker": 10,
        "AuditArchiver": 1,
    }
    defaults = {
        name: parameters[value["Ref"]]["Default"] if isinstance(value, dict) else value
        for name, value in reserved.items()
    }
    # One connection per container: the figure docs/DEPLOYMENT.md checks against max_connections.
    assert defaults["APIHandler"] == 50
    assert defaults["ApiKeyAuthorizer"] == 10
    # A burst the handler cannot take is answered 429 by the gateway, not throttled by Lambda.
    assert parameters["ApiThrottlingBurstLimit"]["Default"] <= defaults["APIHandler"]
    assert sum(defaults.values()) == 74


# What each function's role may do beyond logs and network interfaces (the managed
# AWSLambdaVPCAccessExecutionRole), by statement id.
GRANTS = {
    "APIHandler": {"DatabaseSecret", "ProviderSecret", "SecretsKey", "BackfillQueueSend"},
    "ApiKeyAuthorizer": {"DatabaseSecret", "SecretsKey"},
    "Migrate": {"DatabaseSecret", "SecretsKey"},
    "BackfillPlanner": {"DatabaseSecret", "SecretsKey", "BackfillQueueSend", "FailedRuns"},
    "BackfillPlannerCrypto": {"DatabaseSecret", "SecretsKey", "BackfillQueueSend", "FailedRuns"},
    "BackfillWorker": {"DatabaseSecret", "ProviderSecret", "SecretsKey", "BackfillQueueConsume"},
    "AuditArchiver": {"DatabaseSecret", "SecretsKey", "AuditArchive", "FailedRuns"},
}


def statements(resources: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (policy,) = properties(resources, role)["Policies"]
    found: dict[str, dict[str, Any]] = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in statement:
            condition, statement, otherwise = statement["Fn::If"]
            assert (condition, otherwise) == ("HasSecretsKmsKey", {"Ref": "AWS::NoValue"})
        found[statement["Sid"]] = statement
    return found


def test_every_function_has_its_own_role_with_only_what_it_uses(
    resources: dict[str, Any],
) -> None:
    assert "DefaultRole" not in resources
    for name in FUNCTIONS:
        assert properties(resources, name)["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}
        assert resources[f"{name}Role"]["Type"] == "AWS::IAM::Role"
        assert set(statements(resources, f"{name}Role")) == GRANTS[name], name
        assert properties(resources, f"{name}Role")["ManagedPolicyArns"] == [
            {
                "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole"
            },
            {
                "Fn::If": [
                    "TracingOn",
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"},
                    {"Ref": "AWS::NoValue"},
                ]
            },
        ]


def test_each_grant_names_one_resource_and_the_least_actions(resources: dict[str, Any]) -> None:
    expected = {
        "DatabaseSecret": (["secretsmanager:GetSecretValue"], {"Ref": "DatabaseSecretArn"}),
        "ProviderSecret": (["secretsmanager:GetSecretValue"], {"Ref": "PolygonApiKeySecretArn"}),
        "SecretsKey": (["kms:Decrypt"], {"Ref": "SecretsKmsKeyArn"}),
        "BackfillQueueSend": (
            ["sqs:GetQueueUrl", "sqs:SendMessage"],
            {"Fn::GetAtt": ["BackfillQueue", "Arn"]},
        ),
        "BackfillQueueConsume": (
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            {"Fn::GetAtt": ["BackfillQueue", "Arn"]},
        ),
        "FailedRuns": (["sqs:SendMessage"], {"Fn::GetAtt": ["ScheduledFailureQueue", "Arn"]}),
        "AuditArchive": (["s3:PutObject"], {"Fn::Sub": "${AuditArchiveBucket.Arn}/audit/*"}),
    }
    for name in FUNCTIONS:
        for sid, statement in statements(resources, f"{name}Role").items():
            assert (statement["Action"], statement["Resource"]) == expected[sid], (name, sid)
            assert statement["Effect"] == "Allow"
    key = statements(resources, "ApiKeyAuthorizerRole")["SecretsKey"]
    assert key["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
        }
    }


def test_every_function_logs_to_its_own_group_with_retention(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        # The stack owns the group and the function writes to it by reference, so the group
        # exists before the function's first line, and a stack update never collides with the
        # group Lambda would otherwise create by itself.
        assert properties(resources, name)["LoggingConfig"] == {
            "LogGroup": {"Ref": f"{name}LogGroup"}
        }
        group = resources[f"{name}LogGroup"]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"] == {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}/{name}"},
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        }
    assert properties(resources, "ApiAccessLogGroup") == {
        "LogGroupName": {"Fn::Sub": "/aws/apigateway/${AWS::StackName}/access"},
        "RetentionInDays": {"Ref": "LogRetentionDays"},
    }


def test_tracing_follows_the_parameter(template: dict[str, Any], resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        assert properties(resources, name)["Tracing"] == {
            "Fn::If": ["TracingOn", "Active", "PassThrough"]
        }
    assert template["Conditions"]["TracingOn"] == {"Fn::Equals": [{"Ref": "XRayTracing"}, "true"]}
    assert template["Parameters"]["XRayTracing"]["Default"] == "false"


SCHEDULED = ("BackfillPlanner", "BackfillPlannerCrypto", "AuditArchiver")


def test_a_scheduled_run_that_keeps_failing_is_kept_and_raises_an_alarm(
    resources: dict[str, Any],
) -> None:
    for name in FUNCTIONS:
        function = properties(resources, name)
        if name in SCHEDULED:
            assert function["DeadLetterQueue"] == {
                "Type": "SQS",
                "TargetArn": {"Fn::GetAtt": ["ScheduledFailureQueue", "Arn"]},
            }
            assert function["EventInvokeConfig"] == {
                "MaximumRetryAttempts": 2,
                "MaximumEventAgeInSeconds": 3600,
            }
        else:
            assert "DeadLetterQueue" not in function, name
    alarm = properties(resources, "ScheduledFailuresAlarm")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduledFailureQueue", "QueueName"]}}
    ]


def test_storage_is_kept_encrypted_and_versioned(resources: dict[str, Any]) -> None:
    for queue in ("BackfillQueue", "BackfillDeadLetterQueue", "ScheduledFailureQueue"):
        assert resources[queue]["DeletionPolicy"] == "Retain", queue
        assert resources[queue]["UpdateReplacePolicy"] == "Retain", queue
        assert properties(resources, queue)["SqsManagedSseEnabled"] is True, queue
    bucket = resources["AuditArchiveBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (deny,) = properties(resources, "AuditArchiveBucketPolicy")["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        {"Fn::GetAtt": ["AuditArchiveBucket", "Arn"]},
        {"Fn::Sub": "${AuditArchiveBucket.Arn}/*"},
    ]
    assert properties(resources, "AlarmTopic") == {"KmsMasterKeyId": {"Ref": "AlarmTopicKey"}}
    key = properties(resources, "AlarmTopicKey")
    assert key["EnableKeyRotation"] is True
    cloudwatch = next(
        s for s in key["KeyPolicy"]["Statement"] if s["Sid"] == "CloudWatchPublishesAlarms"
    )
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


def test_rds_proxy_is_created_only_when_an_instance_is_named(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Conditions"]["UseRdsProxy"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "RdsProxyTargetInstance"}, ""]}]
    }
    assert template["Parameters"]["RdsProxyTargetInstance"]["Default"] == ""
    for name in ("DatabaseProxy", "DatabaseProxyRole", "DatabaseProxyTargetGroup"):
        assert resources[name]["Condition"] == "UseRdsProxy", name
    proxy = properties(resources, "DatabaseProxy")
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["RequireTLS"] is True
    assert proxy["Auth"] == [
        {"AuthScheme": "SECRETS", "SecretArn": {"Ref": "DatabaseSecretArn"}, "IAMAuth": "DISABLED"}
    ]
    assert proxy["VpcSubnetIds"] == {"Ref": "SubnetIds"}
    assert properties(resources, "DatabaseProxyTargetGroup")["DBInstanceIdentifiers"] == [
        {"Ref": "RdsProxyTargetInstance"}
    ]
    assert template["Outputs"]["DatabaseProxyEndpoint"]["Condition"] == "UseRdsProxy"


# alarm → (namespace, metric, what it watches)
ALARMS = {
    "ApiServerErrorsAlarm": (
        "AWS/ApiGateway",
        "5XXError",
        [
            {"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}},
            {"Name": "Stage", "Value": "api"},
        ],
    ),
    "AuthorizerErrorsAlarm": ({"Ref": "MetricsNamespace"}, "AuthorizerErrors", None),
    "AuthorizerFailuresAlarm": (
        "AWS/Lambda",
        "Errors",
        [{"Name": "FunctionName", "Value": {"Ref": "ApiKeyAuthorizer"}}],
    ),
    "ApiAuthFailuresAlarm": (
        {"Ref": "MetricsNamespace"},
        "AuthFailures",
        [{"Name": "Function", "Value": {"Ref": "APIHandler"}}],
    ),
    "BackfillPlannerErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        [{"Name": "FunctionName", "Value": {"Ref": "BackfillPlanner"}}],
    ),
    "BackfillPlannerCryptoErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        [{"Name": "FunctionName", "Value": {"Ref": "BackfillPlannerCrypto"}}],
    ),
    "AuditArchiverErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        [{"Name": "FunctionName", "Value": {"Ref": "AuditArchiver"}}],
    ),
    "ScheduledFailuresAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduledFailureQueue", "QueueName"]}}],
    ),
    "BackfillDeadLetterAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["BackfillDeadLetterQueue", "QueueName"]}}],
    ),
    "BackfillQueueAgeAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["BackfillQueue", "QueueName"]}}],
    ),
    "BackfillWorkerErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        [{"Name": "FunctionName", "Value": {"Ref": "BackfillWorker"}}],
    ),
    "BackfillFailuresAlarm": (
        {"Ref": "MetricsNamespace"},
        "BackfillFailures",
        [{"Name": "Function", "Value": {"Ref": "BackfillWorker"}}],
    ),
}


def test_every_alarm_watches_its_metric_and_notifies_the_topic(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    alarms = {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }

    assert set(alarms) == set(ALARMS)
    for name, (namespace, metric, dimensions) in ALARMS.items():
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric), name
        assert alarm.get("Dimensions") == dimensions, name
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
    assert alarms["BackfillQueueAgeAlarm"]["Threshold"] == {"Ref": "QueueAgeThresholdSeconds"}
    assert template["Parameters"]["QueueAgeThresholdSeconds"]["Default"] == 7200
    assert alarms["ApiServerErrorsAlarm"]["Threshold"] == {"Ref": "Api5xxThreshold"}
    # The 5xx alarm's Stage dimension is the stage Chalice deploys.
    config = json.loads((PROJECT_ROOT / ".chalice" / "config.json").read_text())
    assert config["stages"]["prod"]["api_gateway_stage"] == "api"
    assert properties(resources, "RestAPI")["Name"] == {"Ref": "AWS::StackName"}


def test_authorizer_errors_are_counted_from_its_error_lines(resources: dict[str, Any]) -> None:
    metric_filter = properties(resources, "AuthorizerErrorsMetricFilter")

    assert metric_filter["LogGroupName"] == {"Ref": "ApiKeyAuthorizerLogGroup"}
    assert metric_filter["FilterPattern"] == '{ $.level = "error" }'
    assert metric_filter["MetricTransformations"] == [
        {
            "MetricNamespace": {"Ref": "MetricsNamespace"},
            "MetricName": "AuthorizerErrors",
            "MetricValue": "1",
            "Unit": "Count",
        }
    ]


def test_every_suppressed_check_says_why(resources: dict[str, Any]) -> None:
    skipped = {
        (name, skip["id"]): skip["comment"]
        for name, resource in resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }

    assert skipped
    assert [key for key, comment in skipped.items() if len(comment.split()) < 5] == []
    assert {check for _, check in skipped} == {
        "CKV_AWS_18",
        "CKV_AWS_27",
        "CKV_AWS_73",
        "CKV_AWS_116",
        "CKV_AWS_120",
        "CKV_AWS_158",
        "CKV_AWS_173",
    }


def test_the_pages_are_public_routes_whose_files_ship_in_the_zip_and_are_compressed(
    resources: dict[str, Any], package: Path
) -> None:
    paths = api_body(resources)["paths"]
    for path in ("/docs", "/console", "/static/{name}", "/static/vendor/{name}"):
        assert "security" not in paths[path]["get"], path
    assert "security" in paths["/api/v1/symbols"]["get"]
    # Text files only (no binary media types needed), gzip-compressed by API Gateway for
    # clients that accept it.
    assert properties(resources, "RestAPI")["MinimumCompressionSize"] == 1024
    shipped = zipfile.ZipFile(package / "deployment.zip").namelist()
    for name in ("console.html", "console.js", "docs.js", "vendor/lightweight-charts.js"):
        assert f"chalicelib/pages/static/{name}" in shipped, name
