"""The packaged functions, run as Lambda runs them.

`make package-test` builds `deployment.zip` and `sam.json` (`make package`), then runs these
tests. Each function's container is a fresh Python 3.12 whose import path holds only the unzipped
package and boto3 (what the Lambda runtime adds), importing the module its `Handler` names and
nothing else. Its environment is the template's, with every reference resolved to a local
stand-in: PostgreSQL (a fresh database migrated by the packaged `migrate` function), AWS
through a moto server on a local port, Polygon through the simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from chalicelib.config import PROJECT_ROOT
from devtools.polygon_sim import PolygonSimulator
from tests.conftest import FAKE_AWS_ENV, create_database, drop_database, free_port

RUNTIME = Path(__file__).with_name("lambda_runtime.py")
SIM_KEY = "sim-key-package-5b9e"
BUCKET = "mdw-audit-archive-test"
QUEUE = "mdw-backfill-test"
# Friday 2025-11-21, after the US close: the simulator's present, and the planners' `as_of`.
AFTER_CLOSE = datetime(2025, 11, 21, 23, 0, tzinfo=UTC)
STAGE_PREFIX = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/api"


def _required_env(name: str, hint: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: {hint}", pytrace=False)
    return value


@pytest.fixture(scope="session")
def package_build() -> Path:
    build = Path(os.environ.get("MDW_PACKAGE_DIR", PROJECT_ROOT / "build" / "package"))
    if not (build / "deployment.zip").exists():
        pytest.fail(f"no {build}/deployment.zip: run `make package-test`", pytrace=False)
    return build


@pytest.fixture(scope="session")
def template(package_build: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((package_build / "sam.json").read_text())
    return loaded


@pytest.fixture(scope="session")
def package_dir(package_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("lambda-task")
    with zipfile.ZipFile(package_build / "deployment.zip") as archive:
        archive.extractall(target)
    return target


@pytest.fixture(scope="session")
def lambda_python() -> str:
    return _required_env("LAMBDA_PYTHON", "the Python 3.12 interpreter (`make package-test`)")


@pytest.fixture(scope="session")
def runtime_dir() -> str:
    return _required_env("LAMBDA_RUNTIME_DIR", "boto3 for the runtime (`make package-test`)")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """AWS answered by a moto server on a local port, reachable from other processes."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws_clients(moto_endpoint: str) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_endpoint,
            region_name=FAKE_AWS_ENV["AWS_REGION"],
            aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    return client


@pytest.fixture(scope="session")
def simulator() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_key=SIM_KEY, now=AFTER_CLOSE) as sim:
        yield sim


@pytest.fixture(scope="session")
def package_database(server_url: str) -> Iterator[str]:
    """A fresh, empty database: the packaged `migrate` function is what migrates it."""
    name, url = create_database(server_url, label="package_")
    yield url
    drop_database(server_url, name)


def rds_secret(database_url: str) -> dict[str, str]:
    """The database in the RDS secret format Secrets Manager holds for a cluster."""
    params = conninfo_to_dict(database_url)
    return {
        "engine": "postgres",
        "host": str(params.get("host") or "127.0.0.1"),
        "port": str(params.get("port") or "5432"),
        "username": str(params.get("user") or "postgres"),
        # Test servers trust local connections; the secret format requires a password.
        "password": str(params.get("password") or "unused-by-trust-auth"),
        "dbname": str(params["dbname"]),
    }


class Stack:
    """The deployed resources the template's references resolve to."""

    def __init__(self, aws: Callable[[str], Any], database_url: str) -> None:
        secrets = aws("secretsmanager")
        self.database_secret_arn = secrets.create_secret(
            Name="mdw/database", SecretString=json.dumps(rds_secret(database_url))
        )["ARN"]
        self.polygon_secret_arn = secrets.create_secret(
            Name="mdw/polygon", SecretString=json.dumps({"api_key": SIM_KEY})
        )["ARN"]
        sqs = aws("sqs")
        dlq_url = sqs.create_queue(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.queue_url = sqs.create_queue(
            QueueName=QUEUE,
            Attributes={
                "VisibilityTimeout": "0",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}
                ),
            },
        )["QueueUrl"]
        aws("s3").create_bucket(Bucket=BUCKET)
        self.values: dict[str, str] = {
            "DatabaseSecretArn": self.database_secret_arn,
            "PolygonApiKeySecretArn": self.polygon_secret_arn,
            "BackfillQueue": QUEUE,
            "AuditArchiveBucket": BUCKET,
            "AWS::Region": FAKE_AWS_ENV["AWS_REGION"],
        }

    def resolve(self, template: dict[str, Any], value: Any) -> str | None:
        """A template environment value as CloudFormation would set it in this stack; None for
        `AWS::NoValue` (the variable is not set)."""
        if isinstance(value, str):
            return value
        if value == {"Ref": "AWS::NoValue"}:
            return None
        if isinstance(value, dict) and set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            chosen = when_true if self.holds(template, condition) else when_false
            return self.resolve(template, chosen)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            if name in self.values:
                return self.values[name]
            default = template.get("Parameters", {}).get(name, {}).get("Default")
            if default is not None:
                return str(default)
        if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            resource, _ = value["Fn::GetAtt"]
            if resource in self.values:
                return self.values[resource]
        raise AssertionError(f"the package test cannot resolve {value!r}: add it to Stack")

    def holds(self, template: dict[str, Any], condition: str) -> bool:
        """A template condition in this stack (no proxy, no optional parameters given)."""

        def evaluate(expression: Any) -> Any:
            if isinstance(expression, dict) and set(expression) == {"Fn::Not"}:
                (inner,) = expression["Fn::Not"]
                return not evaluate(inner)
            if isinstance(expression, dict) and set(expression) == {"Fn::Equals"}:
                left, right = expression["Fn::Equals"]
                return evaluate(left) == evaluate(right)
            if isinstance(expression, dict) and set(expression) == {"Ref"}:
                return self.resolve(template, expression)
            if isinstance(expression, str):
                return expression
            raise AssertionError(f"the package test cannot evaluate {expression!r}")

        return bool(evaluate(template["Conditions"][condition]))


@pytest.fixture(scope="session")
def stack(aws_clients: Callable[[str], Any], package_database: str) -> Stack:
    return Stack(aws_clients, package_database)


class Container:
    """One warm Lambda container of one function."""

    def __init__(
        self, python: str, package_dir: Path, runtime_dir: str, handler: str, env: dict[str, str]
    ) -> None:
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            [
                python,
                "-I",
                "-S",
                str(RUNTIME),
                str(package_dir),
                runtime_dir,
                handler,
                str(write_fd),
            ],
            cwd=package_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            text=True,
        )
        os.close(write_fd)
        self._results = os.fdopen(read_fd, "r")
        started = self._answer()
        if "errorType" in started:
            raise AssertionError(f"{handler} failed to import: {started}")
        self.modules: list[str] = started["modules"]

    def _answer(self) -> dict[str, Any]:
        line = self._results.readline()
        if not line:
            raise AssertionError(f"the container died:\n{self.stop()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def invoke(self, event: Any, *, remaining_ms: int = 30_000) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event, "remaining_ms": remaining_ms}))
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return self._answer()

    def result(self, event: Any, **options: Any) -> Any:
        answer = self.invoke(event, **options)
        assert "result" in answer, answer
        return answer["result"]

    def stop(self) -> str:
        """End the container; what it wrote to its log."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self._results.close()
        assert self.process.stdout is not None
        with self.process.stdout:
            return self.process.stdout.read()


@pytest.fixture(scope="session")
def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


StartContainer = Callable[..., Container]


@pytest.fixture(scope="session")
def start_container(
    template: dict[str, Any],
    functions: dict[str, dict[str, Any]],
    stack: Stack,
    package_dir: Path,
    lambda_python: str,
    runtime_dir: str,
    moto_endpoint: str,
    simulator: PolygonSimulator,
) -> Iterator[StartContainer]:
    """Start a container of the function with this logical id; `env` overrides variables."""
    started: list[Container] = []

    def start(logical_id: str, **env: str) -> Container:
        properties = functions[logical_id]
        variables = properties.get("Environment", {}).get("Variables", {})
        environment = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(package_dir),
            "AWS_LAMBDA_FUNCTION_NAME": f"mdw-prod-{logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(properties.get("MemorySize", 128)),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            **FAKE_AWS_ENV,
            # The stand-ins' addresses: AWS's endpoint and Polygon's base URL.
            "AWS_ENDPOINT_URL": moto_endpoint,
            "POLYGON_BASE_URL": simulator.url,
            **{
                name: resolved
                for name, value in variables.items()
                if (resolved := stack.resolve(template, value)) is not None
            },
            **env,
        }
        container = Container(
            lambda_python, package_dir, runtime_dir, properties["Handler"], environment
        )
        started.append(container)
        return container

    yield start
    for container in started:
        if container.process.poll() is None:
            container.stop()


class Migrated:
    def __init__(self, url: str, dry_run: dict[str, Any], applied: dict[str, Any]) -> None:
        self.url = url
        self.dry_run = dry_run
        self.applied = applied


@pytest.fixture(scope="session")
def migrated(start_container: StartContainer, package_database: str) -> Migrated:
    """The package database, migrated by the packaged `migrate` function: a dry run, then the
    real run, in one container."""
    migrate = start_container("Migrate")
    dry_run = migrate.result({"dry_run": True})
    applied = migrate.result({})
    migrate.stop()
    return Migrated(package_database, dry_run, applied)


@pytest.fixture
def package_conn(migrated: Migrated) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(migrated.url, autocommit=True) as conn:
        yield conn
