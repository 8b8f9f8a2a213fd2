"""relay_cloud.local.lambdas: moto's simple Lambda backend runs registered handlers in-process.

Invoked through boto3 against an in-process ``mock_aws`` (no sockets): a registered function gets its
payload and a Lambda-like context and answers its JSON result; a raising handler answers Lambda's
Unhandled error (``errorType`` = the exception's class name, which Step Functions uses as the error
name, and a message that never carries the exception's text unless it is one of our typed errors);
unregistered functions keep moto's echo; uninstall restores moto's own ``invoke``.
"""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.local import lambdas

REGION = "us-east-1"
HERE = __name__  # handlers below are registered by their dotted path, as the manifest names them
SECRET = "gho_" + "s" * 36
SEEN: list[tuple[dict, dict]] = []


def echo_handler(event, context):
    SEEN.append((event, {
        "function_name": context.function_name,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }))
    return {"status": "pending", "interval": event.get("interval", 5), "echo": event}


def unavailable_handler(event, context):
    raise UpstreamUnavailable("github")


def leaky_handler(event, context):
    raise RuntimeError(f"POST https://github.com/login/oauth/access_token?device_code={SECRET} failed")


@pytest.fixture
def adapter():
    """A clean adapter for the test; the local stack's registration (if one is running) comes back after."""
    was_installed = lambdas.installed()
    lambdas.uninstall()
    SEEN.clear()
    yield lambdas
    lambdas.uninstall()
    if was_installed:
        lambdas.install()


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield boto3.client("lambda", region_name=REGION)


def create(client, name: str) -> str:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("handler.py", "def lambda_handler(event, context):\n    return None\n")
    return client.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
                                  Code={"ZipFile": archive.getvalue()})["FunctionArn"]


def invoke(client, name: str, payload) -> tuple[str | None, object]:
    response = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def test_a_registered_function_runs_its_handler_with_the_payload_and_a_context(adapter, aws):
    arn = create(aws, "relay-cloud-sample")
    adapter.install({"relay-cloud-sample": (f"{HERE}.echo_handler", 256, 30)})

    error, result = invoke(aws, "relay-cloud-sample", {"action": "poll", "flow_id": "flow_1", "interval": 1})
    assert error is None
    assert result == {"status": "pending", "interval": 1, "echo": {"action": "poll", "flow_id": "flow_1", "interval": 1}}
    ((event, context),) = SEEN
    assert event == {"action": "poll", "flow_id": "flow_1", "interval": 1}
    assert context["function_name"] == "relay-cloud-sample" and context["invoked_function_arn"] == arn
    assert context["memory_limit_in_mb"] == 256 and 0 < context["remaining_ms"] <= 30_000
    assert context["aws_request_id"]

    # By ARN, as a Step Functions Task with the function ARN as its Resource invokes it.
    error, result = invoke(aws, arn, {"interval": 7})
    assert error is None and result["interval"] == 7 and len(SEEN) == 2


def test_a_raising_handler_answers_lambdas_unhandled_error_named_after_the_exception(adapter, aws):
    create(aws, "relay-cloud-unavailable")
    create(aws, "relay-cloud-leaky")
    adapter.install({"relay-cloud-unavailable": f"{HERE}.unavailable_handler", "relay-cloud-leaky": f"{HERE}.leaky_handler"})

    error, payload = invoke(aws, "relay-cloud-unavailable", {})
    assert error == "Unhandled"
    # Step Functions takes errorType as the error name: Retry on ["UpstreamUnavailable"] matches it.
    assert payload == {"errorType": "UpstreamUnavailable", "errorMessage": "github could not be reached"}

    error, payload = invoke(aws, "relay-cloud-leaky", {})
    assert error == "Unhandled" and payload["errorType"] == "RuntimeError"
    assert SECRET not in json.dumps(payload) and "github.com" not in payload["errorMessage"]


def test_unregistered_functions_keep_motos_behaviour(adapter, aws):
    create(aws, "someone-else")
    adapter.install({"relay-cloud-sample": f"{HERE}.echo_handler"})
    error, result = invoke(aws, "someone-else", {"hello": "moto"})
    assert error is None and result == {"hello": "moto"}  # moto's simple backend echoes
    assert SEEN == []


def test_a_registered_name_must_still_exist_as_a_function(adapter, aws):
    adapter.install({"relay-cloud-sample": f"{HERE}.echo_handler"})
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.invoke(FunctionName="relay-cloud-sample", Payload=b"{}")
    assert SEEN == []


def test_handlers_are_imported_lazily_on_first_invoke(adapter, aws):
    create(aws, "relay-cloud-missing")
    adapter.install({"relay-cloud-missing": "tests.unit.no_such_module.lambda_handler"})  # install does not import
    error, payload = invoke(aws, "relay-cloud-missing", {})
    assert error == "Unhandled" and payload["errorType"] == "ModuleNotFoundError"


def test_uninstall_restores_motos_invoke_and_forgets_the_registrations(adapter, aws):
    original = LambdaSimpleBackend.invoke
    create(aws, "relay-cloud-sample")
    adapter.install({"relay-cloud-sample": f"{HERE}.echo_handler"})
    adapter.install({"relay-cloud-sample": f"{HERE}.echo_handler"})  # idempotent
    assert LambdaSimpleBackend.invoke is not original and adapter.installed()

    adapter.uninstall()
    assert LambdaSimpleBackend.invoke is original and not adapter.installed() and adapter.registered() == {}
    error, result = invoke(aws, "relay-cloud-sample", {"hello": "moto"})
    assert error is None and result == {"hello": "moto"} and SEEN == []


def test_the_default_registry_is_the_manifest(adapter):
    from functions.manifest import FUNCTIONS

    adapter.install()
    assert adapter.registered() == {f"relay-cloud-{spec.name}": spec.handler for spec in FUNCTIONS}
    assert adapter.registered()["relay-cloud-workflows"] == "functions.workflows.handler.lambda_handler"
