"""The local stack's Step Functions resources, from the same ASL files the CDK stack deploys.

``bootstrap()`` creates (where missing) the workflows Lambda function — a placeholder zip: its invokes
are served in-process by ``relay_cloud.local.lambdas`` — and the state machines: the device flow from
``workflows/device_flow.asl.json`` with ``${DeviceFlowTaskArn}`` replaced by that function's ARN, and the
workspace provisioning and teardown from ``provision_workspace.asl.json`` / ``delete_workspace.asl.json``
with ``${WorkspaceTaskArn}`` replaced by it: the substitutions the CDK stack makes with
``definition_substitutions``.
"""

from __future__ import annotations

import io
import json
import zipfile

from relay_cloud.local.repo import REPO_ROOT

WORKFLOWS_DIR = REPO_ROOT / "workflows"
DEVICE_FLOW_ASL = WORKFLOWS_DIR / "device_flow.asl.json"
DEVICE_FLOW_TASK_PLACEHOLDER = "${DeviceFlowTaskArn}"
PROVISION_ASL = WORKFLOWS_DIR / "provision_workspace.asl.json"
TEARDOWN_ASL = WORKFLOWS_DIR / "delete_workspace.asl.json"
WORKSPACE_TASK_PLACEHOLDER = "${WorkspaceTaskArn}"

WORKFLOWS_FUNCTION = "relay-cloud-workflows"  # relay_cloud.local.lambdas.function_name("workflows")
DEVICE_FLOW_STATE_MACHINE = "relay-cloud-device-flow"
PROVISION_STATE_MACHINE = "relay-cloud-provision-workspace"
TEARDOWN_STATE_MACHINE = "relay-cloud-delete-workspace"
# The other state machines: (name, ASL file, placeholder, the setting that names its ARN).
WORKSPACE_MACHINES = (
    (PROVISION_STATE_MACHINE, PROVISION_ASL, WORKSPACE_TASK_PLACEHOLDER, "RELAY_PROVISION_STATE_MACHINE_ARN"),
    (TEARDOWN_STATE_MACHINE, TEARDOWN_ASL, WORKSPACE_TASK_PLACEHOLDER, "RELAY_TEARDOWN_STATE_MACHINE_ARN"),
)
WORKFLOWS_ROLE = "relay-cloud-local-workflows"
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                   "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}],
}


def definition(path, placeholder: str, task_arn: str) -> str:
    text = path.read_text()
    if placeholder not in text:
        raise ValueError(f"{path} has no {placeholder} placeholder")
    return text.replace(placeholder, task_arn)


def device_flow_definition(task_arn: str) -> str:
    return definition(DEVICE_FLOW_ASL, DEVICE_FLOW_TASK_PLACEHOLDER, task_arn)


def placeholder_zip() -> bytes:
    """Lambda needs code to create a function; the local runtime never runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    raise RuntimeError('local stub')\n")
    return buffer.getvalue()


def bootstrap(session, endpoint_url: str) -> tuple[str, bool]:
    """(device-flow state machine ARN, whether anything had to be created)."""
    iam, lambda_, sfn = (session.client(name, endpoint_url=endpoint_url) for name in ("iam", "lambda", "stepfunctions"))
    created = False
    try:
        role_arn = iam.get_role(RoleName=WORKFLOWS_ROLE)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(RoleName=WORKFLOWS_ROLE, AssumeRolePolicyDocument=json.dumps(_TRUST))["Role"]["Arn"]
        created = True
    try:
        function_arn = lambda_.get_function(FunctionName=WORKFLOWS_FUNCTION)["Configuration"]["FunctionArn"]
    except lambda_.exceptions.ResourceNotFoundException:
        function_arn = lambda_.create_function(
            FunctionName=WORKFLOWS_FUNCTION, Runtime="python3.12", Role=role_arn, Handler="handler.lambda_handler",
            Code={"ZipFile": placeholder_zip()}, Timeout=30, Architectures=["arm64"],
        )["FunctionArn"]
        created = True
    machines = sfn.list_state_machines().get("stateMachines", [])
    arn = next((m["stateMachineArn"] for m in machines if m["name"] == DEVICE_FLOW_STATE_MACHINE), None)
    if arn is None:
        arn = sfn.create_state_machine(
            name=DEVICE_FLOW_STATE_MACHINE, definition=device_flow_definition(function_arn), roleArn=role_arn,
            type="STANDARD",
        )["stateMachineArn"]
        created = True
    return arn, created


def bootstrap_workspace_machines(session, endpoint_url: str) -> tuple[dict[str, str], bool]:
    """({setting name: state machine ARN} of the provisioning and teardown machines, whether anything had
    to be created). Run after ``bootstrap()``: they invoke the same workflows function."""
    lambda_, sfn = (session.client(name, endpoint_url=endpoint_url) for name in ("lambda", "stepfunctions"))
    function = lambda_.get_function(FunctionName=WORKFLOWS_FUNCTION)["Configuration"]
    machines = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines().get("stateMachines", [])}
    arns, created = {}, False
    for name, path, placeholder, setting in WORKSPACE_MACHINES:
        if name not in machines:
            machines[name] = sfn.create_state_machine(
                name=name, definition=definition(path, placeholder, function["FunctionArn"]),
                roleArn=function["Role"], type="STANDARD",
            )["stateMachineArn"]
            created = True
        arns[setting] = machines[name]
    return arns, created
