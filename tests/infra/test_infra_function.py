"""The function construct refuses sandbox or non-production configuration at synth."""

from __future__ import annotations

import json
from dataclasses import replace

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Template
from relay_cloud_infra.data import Data
from relay_cloud_infra.function import (
    RelayFunction,
    Resources,
    SandboxConfigurationError,
    check_production_environment,
    production_environment,
)
from relay_cloud_infra.vault import Vault

from functions.manifest import FUNCTIONS

BASE = production_environment(
    table_name="relay", kms_key_id="arn:aws:kms:us-east-1:111111111111:key/x",
    public_url="https://relay.example.com", github_client_id="Iv1.abc",
    github_client_secret_arn="arn:aws:secretsmanager:us-east-1:111111111111:secret:gh",
)


@pytest.fixture()
def scaffold(tmp_path):
    app = cdk.App(context={"aws:cdk:bundling-stacks": []}, outdir=str(tmp_path / "out"))
    stack = cdk.Stack(app, "T", env=cdk.Environment(account="111111111111", region="us-east-1"))
    (tmp_path / "layer" / "python").mkdir(parents=True)
    layer = lambda_.LayerVersion(stack, "Layer", code=lambda_.Code.from_asset(str(tmp_path / "layer")))
    resources = Resources(
        table=Data(stack, "Data").table, vault=Vault(stack, "Vault"),
        github_secret=secretsmanager.Secret(stack, "Secret"),
        fly_secret=secretsmanager.Secret(stack, "FlySecret"), fly_environment={"RELAY_FLY_ORG": "relay"},
        railway_secret=secretsmanager.Secret(stack, "RailwaySecret"),
        railway_environment={"RELAY_RAILWAY_WORKSPACE_ID": "ws-1"},
    )
    return stack, layer, resources


def _function(scaffold, environment):
    stack, layer, resources = scaffold
    return RelayFunction(
        stack, "Fn", spec=FUNCTIONS[0], code=lambda_.Code.from_inline("def lambda_handler(e, c): pass"),
        layer=layer, resources=resources, environment=environment,
    )


def test_a_production_environment_is_accepted(scaffold):
    function = _function(scaffold, BASE)
    assert function.function.runtime.name == "python3.12"


@pytest.mark.parametrize(
    "override",
    [
        {"RELAY_GITHUB_OAUTH_URL": "http://127.0.0.1:8787/_sandbox/github"},
        {"RELAY_GITHUB_API_URL": "https://relay.example.com/_sandbox/github"},
        {"RELAY_PUBLIC_URL": "http://localhost:8787"},
        {"RELAY_ENV": "local"},
        {"RELAY_ENV": "staging"},
        {"RELAY_STRIPE_API_URL": "relay.example.com/_sandbox/stripe"},
    ],
)
def test_sandbox_or_non_production_configuration_is_refused(scaffold, override):
    with pytest.raises(SandboxConfigurationError):
        _function(scaffold, {**BASE, **override})


def test_missing_relay_env_is_refused():
    environment = dict(BASE)
    del environment["RELAY_ENV"]
    with pytest.raises(SandboxConfigurationError):
        check_production_environment(environment)


def test_unknown_grants_are_refused(scaffold):
    from dataclasses import replace

    stack, layer, resources = scaffold
    with pytest.raises(ValueError, match="unknown grants"):
        RelayFunction(
            stack, "Bad", spec=replace(FUNCTIONS[0], grants=("table:*",)),
            code=lambda_.Code.from_inline("x = 1"), layer=layer, resources=resources, environment=BASE,
        )


def test_a_function_without_routes_is_accepted(scaffold):
    spec = next(spec for spec in FUNCTIONS if not spec.routes)
    function = _function_for(scaffold, spec)
    assert function.spec is spec


def test_the_fly_grant_needs_the_fly_secret(scaffold):
    stack, layer, resources = scaffold
    spec = next(spec for spec in FUNCTIONS if "fly_secret" in spec.grants and "workflow:provision" not in spec.grants)
    with pytest.raises(ValueError, match="Fly token secret"):
        _function_for((stack, layer, replace(resources, fly_secret=None)), spec)


def _railway_view(stack, function) -> tuple[dict, list[dict]]:
    """The function's synthesized environment and its role's statements on the Railway secret."""
    secret_id = stack.resolve(stack.node.find_child("RailwaySecret").secret_arn)["Ref"]
    resources = Template.from_stack(stack).to_json()["Resources"]
    function_id = stack.resolve(function.function.function_arn)["Fn::GetAtt"][0]
    role = stack.resolve(function.role.role_arn)["Fn::GetAtt"][0]
    statements = [statement for policy in resources.values() if policy["Type"] == "AWS::IAM::Policy"
                  and {"Ref": role} in policy["Properties"]["Roles"]
                  for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                  if secret_id in json.dumps(statement["Resource"])]
    return resources[function_id]["Properties"]["Environment"]["Variables"], statements


def _railway_grantee():
    """A function granted railway_secret that needs no state machine (the workflows task)."""
    return next(spec for spec in FUNCTIONS
                if "railway_secret" in spec.grants and "workflow:provision" not in spec.grants)


def test_the_railway_grant_reads_only_the_railway_token_and_gets_its_settings(scaffold):
    stack, _, resources = scaffold
    spec = _railway_grantee()
    function = _function_for(scaffold, spec)
    secret = stack.resolve(resources.railway_secret.secret_arn)
    variables, statements = _railway_view(stack, function)
    assert variables["RELAY_RAILWAY_API_TOKEN_ARN"] == secret
    assert variables["RELAY_RAILWAY_WORKSPACE_ID"] == "ws-1"
    assert statements == [{
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
        "Effect": "Allow", "Resource": secret,
    }]


def test_without_the_railway_secret_the_railway_grant_gives_nothing(scaffold):
    # No railway_workspace_id context: Railway stays off, the grant is neither an error nor a permission.
    stack, layer, resources = scaffold
    spec = _railway_grantee()
    function = _function_for((stack, layer, replace(resources, railway_secret=None)), spec)
    variables, statements = _railway_view(stack, function)
    assert not [name for name in variables if name.startswith("RELAY_RAILWAY_")]
    assert variables["RELAY_FLY_API_TOKEN_ARN"]  # Fly is still there
    assert statements == []


def test_a_function_without_the_railway_grant_gets_no_railway_setting(scaffold):
    stack, _, _ = scaffold
    spec = next(spec for spec in FUNCTIONS if "vault" in spec.grants and "railway_secret" not in spec.grants
                and "workflow:device_flow" not in spec.grants)
    function = _function_for(scaffold, spec)
    variables, statements = _railway_view(stack, function)
    assert not [name for name in variables if name.startswith("RELAY_RAILWAY_")]
    assert statements == []


def test_the_device_flow_grant_needs_the_workflows_construct(scaffold):
    spec = next(spec for spec in FUNCTIONS if "workflow:device_flow" in spec.grants)
    with pytest.raises(ValueError, match="workflows construct"):
        _function_for(scaffold, spec)


def _function_for(scaffold, spec):
    stack, layer, resources = scaffold
    return RelayFunction(
        stack, f"Fn{spec.name}", spec=spec, code=lambda_.Code.from_inline("def lambda_handler(e, c): pass"),
        layer=layer, resources=resources, environment=BASE,
    )
