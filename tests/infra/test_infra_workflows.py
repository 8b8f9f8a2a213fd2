"""The workflows construct: the device-flow, workspace provisioning and teardown state machines deployed
from the same ASL files the local stack executes, their task function (no route), least-privilege grants
both ways, logging without execution data, alarms on failed and timed-out executions, and the custom
providers' configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cdk_template_helpers import as_list, of_type, props, relay_functions, role_of, service_name, statements_by_role
from infra_build import build
from relay_cloud_infra.function import SandboxConfigurationError
from relay_cloud_infra.workflows import (
    DEVICE_FLOW_ASL,
    DEVICE_FLOW_TASK_SUBSTITUTION,
    PROVISION_ASL,
    TEARDOWN_ASL,
    WORKSPACE_TASK_SUBSTITUTION,
)

from functions.manifest import FUNCTIONS, SCHEDULES
from relay_cloud.local import workflows as local_workflows

GRANTEES = {spec.name for spec in FUNCTIONS if "workflow:device_flow" in spec.grants}
PLACEHOLDER = "${" + DEVICE_FLOW_TASK_SUBSTITUTION + "}"


def _machines(resources, substitution: str) -> dict[str, dict]:
    return {lid: machine for lid, machine in of_type(resources, "AWS::StepFunctions::StateMachine").items()
            if substitution in props(machine)["DefinitionSubstitutions"]}


def _machine(resources) -> tuple[str, dict]:
    """The device-flow state machine."""
    (machine,) = _machines(resources, DEVICE_FLOW_TASK_SUBSTITUTION).items()
    return machine


def _functions_by_name(resources) -> dict[str, tuple[str, dict]]:
    return {service_name(fn): (lid, fn) for lid, fn in relay_functions(resources).items()}


def _task_function_id(resources) -> str:
    return _functions_by_name(resources)["workflows"][0]


# --- the shared definition ------------------------------------------------------------------------------


def test_cdk_and_the_local_stack_deploy_the_same_file_with_the_same_placeholder():
    assert Path(DEVICE_FLOW_ASL).resolve() == Path(local_workflows.DEVICE_FLOW_ASL).resolve()
    assert local_workflows.DEVICE_FLOW_TASK_PLACEHOLDER == PLACEHOLDER
    definition = json.loads(Path(DEVICE_FLOW_ASL).read_text())
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"  # moto does not run JSONata
    tasks = {name: state for name, state in definition["States"].items() if state["Type"] == "Task"}
    assert tasks and all(state["Resource"] == PLACEHOLDER for state in tasks.values())
    assert definition["States"][definition["StartAt"]] == {"Type": "Wait", "SecondsPath": "$.interval", "Next": "Poll"}
    (retry, *_) = tasks["Poll"]["Retry"]
    assert retry["ErrorEquals"] == ["UpstreamUnavailable"] and retry["BackoffRate"] > 1
    assert tasks["Poll"]["Catch"][0]["ErrorEquals"] == ["States.ALL"]


def test_state_machine_is_standard_and_loaded_from_the_shared_file_with_the_task_substituted(built, resources):
    app, _, _ = built
    _, machine = _machine(resources)
    p = props(machine)
    assert p["StateMachineType"] == "STANDARD"
    assert "DefinitionString" not in p
    key = p["DefinitionS3Location"]["Key"]
    asset = Path(app.outdir) / f"asset.{key}"
    assert asset.read_bytes() == Path(DEVICE_FLOW_ASL).read_bytes()
    assert p["DefinitionSubstitutions"] == {
        DEVICE_FLOW_TASK_SUBSTITUTION: {"Fn::GetAtt": [_task_function_id(resources), "Arn"]}
    }


def test_state_machine_logs_errors_without_execution_data_and_is_not_traced(resources):
    _, machine = _machine(resources)
    p = props(machine)
    logging = p["LoggingConfiguration"]
    assert logging["Level"] == "ERROR" and logging["IncludeExecutionData"] is False
    (destination,) = logging["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert props(resources[group])["RetentionInDays"] > 0
    assert p["TracingConfiguration"] == {"Enabled": False}


def test_state_machine_role_may_invoke_only_its_task_function(resources):
    _, machine = _machine(resources)
    role = props(machine)["RoleArn"]["Fn::GetAtt"][0]
    trust = props(resources[role])["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "states.amazonaws.com"}]
    statements = statements_by_role(resources)[role]
    invoke = [s for s in statements if any(a.startswith("lambda:") for a in as_list(s["Action"]))]
    assert invoke == [{"Action": "lambda:InvokeFunction", "Effect": "Allow",
                       "Resource": {"Fn::GetAtt": [_task_function_id(resources), "Arn"]}}]
    for statement in statements:
        if statement not in invoke:  # CloudWatch Logs vended delivery (no resource-level permissions)
            assert all(a.startswith("logs:") for a in as_list(statement["Action"])), statement
    assert not props(resources[role]).get("ManagedPolicyArns")


# --- the task function -----------------------------------------------------------------------------------


def test_the_task_function_has_no_route_and_no_workflow_grant(resources):
    spec = next(spec for spec in FUNCTIONS if spec.name == "workflows")
    lid, fn = _functions_by_name(resources)["workflows"]
    assert props(fn)["Handler"] == spec.handler and props(fn)["Timeout"] == spec.timeout_s
    integrations = json.dumps(of_type(resources, "AWS::ApiGatewayV2::Integration"))
    assert f'"{lid}"' not in integrations
    assert "RELAY_DEVICE_FLOW_STATE_MACHINE_ARN" not in props(fn)["Environment"]["Variables"]
    permissions = json.dumps(of_type(resources, "AWS::Lambda::Permission"))
    assert f'"{lid}"' not in permissions  # nothing but the state machine role (by IAM) invokes it


# --- the workflow:device_flow grant ------------------------------------------------------------------------


def test_device_flow_grant_starts_this_machine_and_stops_only_its_executions(resources):
    machine_id, _ = _machine(resources)
    assert GRANTEES, "the manifest grants workflow:device_flow to the providers function"
    statements = statements_by_role(resources)
    executions = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:us-east-1:111111111111:execution:",
                                    {"Fn::GetAtt": [machine_id, "Name"]}, ":*"]]}
    for name, (_, fn) in _functions_by_name(resources).items():
        states = [s for s in statements.get(role_of(fn), [])
                  if any(a.startswith("states:") for a in as_list(s["Action"]))
                  and s["Resource"] in ({"Ref": machine_id}, executions)]
        variables = props(fn)["Environment"]["Variables"]
        if name in GRANTEES:
            assert sorted(states, key=lambda s: s["Action"]) == [
                {"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine_id}},
                {"Action": "states:StopExecution", "Effect": "Allow", "Resource": executions},
            ], name
            assert variables["RELAY_DEVICE_FLOW_STATE_MACHINE_ARN"] == {"Ref": machine_id}
        else:
            assert states == [], name
            assert "RELAY_DEVICE_FLOW_STATE_MACHINE_ARN" not in variables, name


# --- alarms -----------------------------------------------------------------------------------------------


def test_failed_and_timed_out_executions_raise_alarms(resources):
    machine_id, _ = _machine(resources)
    (topic,) = of_type(resources, "AWS::SNS::Topic")
    alarmed = {
        props(a)["MetricName"]
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if props(a)["Namespace"] == "AWS/States"
        and props(a)["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
        and props(a)["AlarmActions"] == [{"Ref": topic}]
        and props(a)["Threshold"] == 1
    }
    assert alarmed == {"ExecutionsFailed", "ExecutionsTimedOut"}


# --- custom providers (context custom_providers) ---------------------------------------------------------

CUSTOM = [{
    "id": "corp-sso", "display_name": "Corp SSO",
    "device_authorization_url": "https://sso.example.com/oauth/device_authorization",
    "token_url": "https://sso.example.com/oauth/token", "userinfo_url": "https://sso.example.com/userinfo",
    "client_id": "relay", "scopes": ["openid"],
    "client_secret_arn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:corp-sso-client-AbCdEf",
}]
VAULT_FUNCTIONS = {spec.name for spec in FUNCTIONS if "vault" in spec.grants}


def test_custom_providers_reach_only_the_vault_functions(web_dir, tmp_path_factory):
    _, stack, _ = build(web_dir, tmp_path_factory, custom_providers=json.dumps(CUSTOM))
    from aws_cdk.assertions import Template

    resources = Template.from_stack(stack).to_json()["Resources"]
    scheduled = {spec.name for spec in SCHEDULES if "vault" in spec.grants}
    for name, (_, fn) in _functions_by_name(resources).items():
        variables = props(fn)["Environment"]["Variables"]
        if name in VAULT_FUNCTIONS | scheduled:
            assert json.loads(variables["RELAY_CUSTOM_PROVIDERS"]) == CUSTOM, name
        else:
            assert "RELAY_CUSTOM_PROVIDERS" not in variables, name


def test_only_the_vault_functions_may_read_custom_provider_secrets(web_dir, tmp_path_factory):
    _, stack, _ = build(web_dir, tmp_path_factory, custom_providers=json.dumps(CUSTOM))
    from aws_cdk.assertions import Template

    resources = Template.from_stack(stack).to_json()["Resources"]
    readers = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Resource") == CUSTOM[0]["client_secret_arn"]:
                assert statement["Action"] == "secretsmanager:GetSecretValue"
                readers.update(role["Ref"] for role in resource["Properties"]["Roles"])
    roles = {props(fn)["Role"]["Fn::GetAtt"][0]: name for name, (_, fn) in _functions_by_name(resources).items()}
    scheduled = {spec.name for spec in SCHEDULES if "vault" in spec.grants}
    assert {roles[r] for r in readers} == (VAULT_FUNCTIONS | scheduled) & set(roles.values())


def test_no_custom_providers_by_default(resources):
    for fn in relay_functions(resources).values():
        assert "RELAY_CUSTOM_PROVIDERS" not in props(fn)["Environment"]["Variables"]


@pytest.mark.parametrize(
    "override",
    [
        {"token_url": "http://127.0.0.1:8787/_sandbox/idp/oauth/token"},
        {"device_authorization_url": "https://relay.example.com/_sandbox/idp/oauth/device_authorization"},
        {"userinfo_url": "ftp://sso.example.com/userinfo"},
        {"token_url": None},
        {"client_secret": "inline-secrets-never-reach-a-function-environment"},
    ],
)
def test_sandbox_or_invalid_custom_providers_are_refused_at_synth(web_dir, tmp_path_factory, override):
    entry = {**CUSTOM[0], **override}
    with pytest.raises(SandboxConfigurationError):
        build(web_dir, tmp_path_factory, custom_providers=json.dumps([entry]))


def test_custom_providers_that_are_not_json_are_refused_at_synth(web_dir, tmp_path_factory):
    with pytest.raises(SandboxConfigurationError):
        build(web_dir, tmp_path_factory, custom_providers="[{not json")


# --- the workspace provisioning and teardown machines -------------------------------------------------------

WORKSPACE_PLACEHOLDER = "${" + WORKSPACE_TASK_SUBSTITUTION + "}"


@pytest.mark.parametrize("path", [PROVISION_ASL, TEARDOWN_ASL])
def test_workspace_workflows_share_their_files_with_the_local_stack(path):
    assert {Path(p).resolve() for p in (PROVISION_ASL, TEARDOWN_ASL)} == {
        Path(local_workflows.PROVISION_ASL).resolve(), Path(local_workflows.TEARDOWN_ASL).resolve()}
    assert local_workflows.WORKSPACE_TASK_PLACEHOLDER == WORKSPACE_PLACEHOLDER
    definition = json.loads(Path(path).read_text())
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"
    tasks = {name: state for name, state in definition["States"].items() if state["Type"] == "Task"}
    assert tasks and all(state["Resource"] == WORKSPACE_PLACEHOLDER for state in tasks.values())
    for name, state in tasks.items():
        assert state["Parameters"]["task"].startswith("workspace."), name
        if name != "RecordFailure":  # recording the failure retries on anything
            assert "UpstreamUnavailable" in state["Retry"][0]["ErrorEquals"], name
    steps = {name: state for name, state in tasks.items() if name not in ("RecordFailure",)}
    for name, state in steps.items():
        if name != "Compensate":
            assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"], name
    assert any(state["Type"] == "Fail" for state in definition["States"].values())


def test_the_provisioning_waits_in_a_wait_state_with_seconds_from_the_input():
    states = json.loads(Path(PROVISION_ASL).read_text())["States"]
    waits = [state for state in states.values() if state["Type"] == "Wait"]
    assert waits == [{"Type": "Wait", "SecondsPath": "$.timing.poll_seconds", "Next": "WaitStarted"}]


def test_workspace_machines_are_standard_from_the_shared_files_and_invoke_only_the_task(built, resources):
    app, _, _ = built
    machines = _machines(resources, WORKSPACE_TASK_SUBSTITUTION)
    assert len(machines) == 2
    files = set()
    task = _task_function_id(resources)
    for machine in machines.values():
        p = props(machine)
        assert p["StateMachineType"] == "STANDARD"
        assert p["DefinitionSubstitutions"] == {WORKSPACE_TASK_SUBSTITUTION: {"Fn::GetAtt": [task, "Arn"]}}
        files.add((Path(app.outdir) / f"asset.{p['DefinitionS3Location']['Key']}").read_bytes())
        assert p["LoggingConfiguration"]["Level"] == "ERROR"
        assert p["LoggingConfiguration"]["IncludeExecutionData"] is False
        role = p["RoleArn"]["Fn::GetAtt"][0]
        invoke = [s for s in statements_by_role(resources)[role]
                  if any(a.startswith("lambda:") for a in as_list(s["Action"]))]
        assert invoke == [{"Action": "lambda:InvokeFunction", "Effect": "Allow",
                           "Resource": {"Fn::GetAtt": [task, "Arn"]}}]
    assert files == {Path(PROVISION_ASL).read_bytes(), Path(TEARDOWN_ASL).read_bytes()}


def _by_file(built, resources) -> dict[str, str]:
    app, _, _ = built
    found = {}
    for lid, machine in _machines(resources, WORKSPACE_TASK_SUBSTITUTION).items():
        key = props(machine)["DefinitionS3Location"]["Key"]
        content = (Path(app.outdir) / f"asset.{key}").read_bytes()
        found["provision" if content == Path(PROVISION_ASL).read_bytes() else "teardown"] = lid
    return found


@pytest.mark.parametrize("grant, variable", [("workflow:provision", "RELAY_PROVISION_STATE_MACHINE_ARN"),
                                             ("workflow:teardown", "RELAY_TEARDOWN_STATE_MACHINE_ARN")])
def test_workspace_workflow_grants_start_only_their_machine(built, resources, grant, variable):
    machine_id = _by_file(built, resources)[grant.split(":")[1]]
    grantees = {spec.name for spec in FUNCTIONS if grant in spec.grants}
    assert grantees, f"the manifest grants {grant}"
    statements = statements_by_role(resources)
    for name, (_, fn) in _functions_by_name(resources).items():
        starts = [s for s in statements.get(role_of(fn), [])
                  if "states:StartExecution" in as_list(s["Action"]) and s["Resource"] == {"Ref": machine_id}]
        variables = props(fn)["Environment"]["Variables"]
        if name in grantees:
            assert starts and variables[variable] == {"Ref": machine_id}, name
        else:
            assert not starts and variable not in variables, name


def test_only_fly_functions_read_the_fly_token_and_get_its_arn(stack, resources):
    secret = stack.resolve(stack.fly_secret.secret_arn)
    grantees = {spec.name for spec in (*FUNCTIONS, *SCHEDULES) if "fly_secret" in spec.grants}
    assert "workflows" in grantees
    statements = statements_by_role(resources)
    for name, (_, fn) in _functions_by_name(resources).items():
        variables = props(fn)["Environment"]["Variables"]
        reads = [s for s in statements.get(role_of(fn), []) if s.get("Resource") == secret]
        if name in grantees:
            assert variables["RELAY_FLY_API_TOKEN_ARN"] == secret and variables["RELAY_FLY_ORG"], name
            assert reads, name
        else:
            assert "RELAY_FLY_API_TOKEN_ARN" not in variables and not reads, name


def test_teardown_grantees_read_only_teardown_executions(built, resources):
    """A repeated delete describes the previous teardown (still running → no second one): DescribeExecution on
    this machine's executions only, never StopExecution."""
    machine_id = _by_file(built, resources)["teardown"]
    executions = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:us-east-1:111111111111:execution:",
                                    {"Fn::GetAtt": [machine_id, "Name"]}, ":*"]]}
    grantees = {spec.name for spec in FUNCTIONS if "workflow:teardown" in spec.grants}
    statements = statements_by_role(resources)
    for name, (_, fn) in _functions_by_name(resources).items():
        on_executions = [s for s in statements.get(role_of(fn), []) if s["Resource"] == executions]
        if name in grantees:
            assert on_executions == [{"Action": "states:DescribeExecution", "Effect": "Allow",
                                      "Resource": executions}], name
        else:
            assert on_executions == [], name
