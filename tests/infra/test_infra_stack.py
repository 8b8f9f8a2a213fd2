"""The synthesized RelayCloud stack: data, vault, functions, API, web, alarms."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template
from cdk_template_helpers import (
    as_list,
    key_for_alias,
    mentions,
    of_type,
    props,
    relay_functions,
    role_of,
    service_name,
    statements_by_role,
)
from infra_build import build


from functions.manifest import FUNCTIONS, HTTP_FUNCTIONS, SCHEDULES
from relay_cloud.adapters.dynamo.table import TABLE

# Every deployed function by its POWERTOOLS_SERVICE_NAME: the manifest's and the schedule targets.
SPECS = {spec.name: spec for spec in (*FUNCTIONS, *SCHEDULES)}
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


# --- data -------------------------------------------------------------------------------------------


def _table(resources) -> tuple[str, dict]:
    (table,) = of_type(resources, "AWS::DynamoDB::GlobalTable").items()
    return table


def test_table_has_the_keys_indexes_and_ttl_of_the_shared_definition(resources):
    _, table = _table(resources)
    p = props(table)
    assert p["KeySchema"] == [
        {"AttributeName": TABLE.partition_key, "KeyType": "HASH"},
        {"AttributeName": TABLE.sort_key, "KeyType": "RANGE"},
    ]
    indexes = {gsi["IndexName"]: gsi for gsi in p["GlobalSecondaryIndexes"]}
    assert set(indexes) == {index.name for index in TABLE.indexes}
    for index in TABLE.indexes:
        assert indexes[index.name]["KeySchema"] == [
            {"AttributeName": index.partition_key, "KeyType": "HASH"},
            {"AttributeName": index.sort_key, "KeyType": "RANGE"},
        ]
        assert indexes[index.name]["Projection"] == {"ProjectionType": "ALL"}
    assert {d["AttributeName"] for d in p["AttributeDefinitions"]} == set(TABLE.key_attributes())
    assert all(d["AttributeType"] == "S" for d in p["AttributeDefinitions"])
    assert p["TimeToLiveSpecification"] == {"AttributeName": TABLE.ttl_attribute, "Enabled": True}


def test_table_is_on_demand_with_pitr_cmk_encryption_and_retained(resources):
    _, table = _table(resources)
    p = props(table)
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    (replica,) = p["Replicas"]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert replica["DeletionProtectionEnabled"] is True
    table_key = key_for_alias(resources, "alias/relay-cloud-table")
    assert replica["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [table_key, "Arn"]}
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"


# --- keys and grants --------------------------------------------------------------------------------


def test_every_key_rotates_and_the_vault_key_is_retained(resources):
    keys = of_type(resources, "AWS::KMS::Key")
    assert keys and all(props(key)["EnableKeyRotation"] is True for key in keys.values())
    vault = keys[key_for_alias(resources, "alias/relay-cloud-vault")]
    assert vault["DeletionPolicy"] == "Retain"


def test_only_vault_grantees_may_use_the_vault_key_and_only_for_envelope_encryption(resources):
    vault_key = key_for_alias(resources, "alias/relay-cloud-vault")
    statements = statements_by_role(resources)
    roles_on_vault = set()
    for role, role_statements in statements.items():
        for statement in role_statements:
            if mentions(statement["Resource"], vault_key):
                roles_on_vault.add(role)
                assert sorted(as_list(statement["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    expected = {
        role_of(fn)
        for fn in relay_functions(resources).values()
        if "vault" in SPECS.get(service_name(fn), _NoSpec).grants
    }
    assert expected, "the manifest names at least one vault grantee (auth)"
    assert roles_on_vault == expected


class _NoSpec:
    grants = ()


def test_no_policy_grants_kms_wildcards_or_encrypt_on_the_vault(resources):
    vault_key = key_for_alias(resources, "alias/relay-cloud-vault")
    for role_statements in statements_by_role(resources).values():
        for statement in role_statements:
            actions = as_list(statement["Action"])
            assert "*" not in actions and "kms:*" not in actions
            if any(action.startswith("kms:") for action in actions):
                assert statement["Resource"] != "*", statement
            if mentions(statement["Resource"], vault_key):
                assert not any(a in ("kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*") for a in actions)


def test_grants_follow_the_manifest(resources):
    statements = statements_by_role(resources)
    (secret,) = [lid for lid, res in of_type(resources, "AWS::SecretsManager::Secret").items()
                 if "GitHub" in props(res).get("Description", "")]
    (fly_secret,) = [lid for lid, res in of_type(resources, "AWS::SecretsManager::Secret").items()
                     if "Fly.io" in props(res).get("Description", "")]
    for fn in relay_functions(resources).values():
        spec = SPECS.get(service_name(fn))
        if spec is None:
            continue
        actions = {a for s in statements.get(role_of(fn), []) for a in as_list(s["Action"])}
        assert ("dynamodb:GetItem" in actions) == ("table:read" in spec.grants), spec.name
        assert ("dynamodb:PutItem" in actions) == ("table:write" in spec.grants), spec.name
        reads_secret = any(
            mentions(s["Resource"], secret) for s in statements.get(role_of(fn), [])
        )
        assert reads_secret == ("github_secret" in spec.grants), spec.name
        reads_fly = any(mentions(s["Resource"], fly_secret) for s in statements.get(role_of(fn), []))
        assert reads_fly == ("fly_secret" in spec.grants), spec.name


# --- Railway (context railway_workspace_id) ------------------------------------------------------------------

RAILWAY_WORKSPACE_ID = "0b4a3c2d-1e2f-4a5b-8c7d-6e5f4a3b2c1d"
RAILWAY_GRANTEES = {spec.name for spec in (*FUNCTIONS, *SCHEDULES) if "railway_secret" in spec.grants}
RAILWAY_VARIABLES = ("RELAY_RAILWAY_API_TOKEN_ARN", "RELAY_RAILWAY_WORKSPACE_ID")


@pytest.fixture(scope="module")
def railway(web_dir, tmp_path_factory):
    """(app, stack, nag pack, resources) of a deployment offering Railway workspaces."""
    app, stack, pack = build(web_dir, tmp_path_factory, railway_workspace_id=RAILWAY_WORKSPACE_ID)
    return app, stack, pack, Template.from_stack(stack).to_json()["Resources"]


def test_the_provider_callers_are_the_railway_grantees():
    # Whoever calls the provisioner: the API (start/stop/restart, computes), the workflow steps, the reconcile.
    assert RAILWAY_GRANTEES == {"workspaces", "workflows", "workspace-reconcile"}
    assert all("fly_secret" in SPECS[name].grants for name in RAILWAY_GRANTEES)


def test_railway_token_secret_and_its_arn_output(railway):
    _, stack, _, resources = railway
    (secret,) = [lid for lid, res in of_type(resources, "AWS::SecretsManager::Secret").items()
                 if "Railway" in props(res).get("Description", "")]
    assert stack.resolve(stack.railway_secret.secret_arn) == {"Ref": secret}
    assert "set its value after the first deploy" in props(resources[secret])["Description"]
    outputs = Template.from_stack(stack).to_json()["Outputs"]
    assert outputs["RailwayApiTokenSecretArn"]["Value"] == {"Ref": secret}


def test_only_the_railway_grantees_read_exactly_the_railway_token(railway):
    _, stack, _, resources = railway
    secret = stack.resolve(stack.railway_secret.secret_arn)
    (secret_id,) = secret.values()
    statements = statements_by_role(resources)
    functions = {service_name(fn): fn for fn in relay_functions(resources).values()}
    assert RAILWAY_GRANTEES <= set(functions)
    for name, fn in functions.items():
        on_secret = [s for s in statements.get(role_of(fn), []) if mentions(s["Resource"], secret_id)]
        if name in RAILWAY_GRANTEES:
            assert on_secret == [{"Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                  "Effect": "Allow", "Resource": secret}], name
        else:
            assert on_secret == [], name
    readers = {role for role, role_statements in statements.items()
               for s in role_statements if mentions(s["Resource"], secret_id)}
    assert readers == {role_of(functions[name]) for name in RAILWAY_GRANTEES}


def test_only_the_railway_grantees_get_the_token_arn_and_workspace_id(railway):
    _, stack, _, resources = railway
    secret = stack.resolve(stack.railway_secret.secret_arn)
    for fn in relay_functions(resources).values():
        variables = props(fn)["Environment"]["Variables"]
        if service_name(fn) in RAILWAY_GRANTEES:
            assert variables["RELAY_RAILWAY_API_TOKEN_ARN"] == secret, service_name(fn)
            assert variables["RELAY_RAILWAY_WORKSPACE_ID"] == RAILWAY_WORKSPACE_ID, service_name(fn)
            assert "RELAY_RAILWAY_API_TOKEN" not in variables  # never the token itself
        else:
            assert not set(RAILWAY_VARIABLES) & set(variables), service_name(fn)


def test_the_railway_secret_has_no_unexplained_nag_finding(railway):
    app, stack, pack, resources = railway
    assert [v.rule_name for v in pack.validate_scope(app).violations] == []
    secret = stack.resolve(stack.railway_secret.secret_arn)["Ref"]
    acknowledged = [r["id"] for r in resources[secret]["Metadata"]["cdk_nag"]["rules_to_suppress"]]
    assert acknowledged == ["AwsSolutions-SMG4"]


def test_without_railway_workspace_id_railway_stays_off(stack, template, resources):
    assert stack.railway_secret is None
    assert not [lid for lid, res in of_type(resources, "AWS::SecretsManager::Secret").items()
                if "Railway" in props(res).get("Description", "")]
    assert "RailwayApiTokenSecretArn" not in template.to_json()["Outputs"]
    for fn in relay_functions(resources).values():
        variables = props(fn)["Environment"]["Variables"]
        assert not [name for name in variables if name.startswith("RELAY_RAILWAY_")], service_name(fn)
    secrets = set(of_type(resources, "AWS::SecretsManager::Secret"))
    for role_statements in statements_by_role(resources).values():
        for statement in role_statements:
            if "secretsmanager:GetSecretValue" in as_list(statement["Action"]):
                assert any(mentions(statement["Resource"], lid) for lid in secrets), statement


# --- functions --------------------------------------------------------------------------------------


def test_one_function_per_spec_with_the_shared_defaults(resources):
    functions = relay_functions(resources)
    assert sorted(service_name(fn) for fn in functions.values()) == sorted(
        [spec.name for spec in FUNCTIONS] + [spec.name for spec in SCHEDULES]
    )
    (core_layer,) = [
        lid for lid, res in of_type(resources, "AWS::Lambda::LayerVersion").items()
        if props(res).get("CompatibleRuntimes") == ["python3.12"]
    ]
    for fn in functions.values():
        p = props(fn)
        assert p["Architectures"] == ["arm64"]
        assert p["Runtime"] == "python3.12"
        spec = SPECS.get(service_name(fn))
        if spec is not None:  # schedule targets are checked in test_infra_schedules
            assert p["Handler"] == spec.handler
            assert p["MemorySize"] == spec.memory_mb and p["Timeout"] == spec.timeout_s
        assert p["LoggingConfig"]["LogFormat"] == "JSON"
        assert "LogGroup" in p["LoggingConfig"]
        assert {"Ref": core_layer} in p["Layers"]
        assert "ReservedConcurrentExecutions" not in p
        assert p.get("TracingConfig", {}).get("Mode", "PassThrough") == "PassThrough"
        env = p["Environment"]["Variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "AgentRelayCloud"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
        for name in ("RELAY_TABLE_NAME", "RELAY_KMS_KEY_ID", "RELAY_PUBLIC_URL", "RELAY_GITHUB_CLIENT_ID",
                     "RELAY_GITHUB_CLIENT_SECRET_ARN"):
            assert name in env


def test_function_log_groups_have_retention(resources):
    groups = of_type(resources, "AWS::Logs::LogGroup")
    for fn in relay_functions(resources).values():
        group = props(fn)["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] > 0


def test_no_deployed_function_carries_sandbox_configuration(resources):
    for lid, fn in of_type(resources, "AWS::Lambda::Function").items():
        variables = props(fn).get("Environment", {}).get("Variables", {})
        rendered = json.dumps(variables)
        assert "_sandbox" not in rendered and "http://" not in rendered, lid
    for fn in relay_functions(resources).values():
        variables = props(fn)["Environment"]["Variables"]
        assert variables["RELAY_ENV"] == "production"
        public_url = json.dumps(variables["RELAY_PUBLIC_URL"])
        assert '"https://"' in public_url or public_url.startswith('"https://')


# --- API --------------------------------------------------------------------------------------------


def test_one_route_per_route_key(resources):
    routes = [props(r)["RouteKey"] for r in of_type(resources, "AWS::ApiGatewayV2::Route").values()]
    expected = [key for spec in FUNCTIONS for key in spec.routes]
    assert sorted(routes) == sorted(expected)
    assert len(of_type(resources, "AWS::ApiGatewayV2::Integration")) == len(HTTP_FUNCTIONS)


def test_default_stage_is_throttled_and_access_logged_without_query_strings(resources):
    (stage,) = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    p = props(stage)
    assert p["StageName"] == "$default" and p["AutoDeploy"] is True
    throttle = p["DefaultRouteSettings"]
    assert throttle["ThrottlingRateLimit"] > 0 and throttle["ThrottlingBurstLimit"] > 0
    log_format = p["AccessLogSettings"]["Format"]
    fields = json.loads(log_format)
    assert "$context.routeKey" in fields.values() and "$context.status" in fields.values()
    lowered = log_format.lower()
    for forbidden in ("query", "$context.path", "rawpath", "$input", "$request", "$context.requesturi"):
        assert forbidden not in lowered, forbidden


# --- web --------------------------------------------------------------------------------------------


def test_site_bucket_is_private_versioned_encrypted_and_ssl_only(resources):
    (bucket_id, bucket) = next(
        (lid, res) for lid, res in of_type(resources, "AWS::S3::Bucket").items() if lid.startswith("WebBucket")
    )
    p = props(bucket)
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    policies = [props(p)["PolicyDocument"]["Statement"] for p in of_type(resources, "AWS::S3::BucketPolicy").values()
                if mentions(props(p)["Bucket"], bucket_id)]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for statements in policies for s in statements
    )


def _distribution(resources) -> dict:
    (distribution,) = of_type(resources, "AWS::CloudFront::Distribution").values()
    return props(distribution)["DistributionConfig"]


def test_cloudfront_reads_s3_through_oac_and_forwards_the_api_uncached(resources):
    assert len(of_type(resources, "AWS::CloudFront::OriginAccessControl")) == 1
    config = _distribution(resources)
    assert config["DefaultRootObject"] == "index.html"
    s3_origin = next(o for o in config["Origins"] if "S3OriginConfig" in o)
    assert "OriginAccessControlId" in s3_origin
    behaviors = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    assert set(behaviors) == {"/api/*", "/health"}
    api_origin = next(o for o in config["Origins"] if "CustomOriginConfig" in o)
    assert api_origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert api_origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    for behavior in behaviors.values():
        assert behavior["TargetOriginId"] == api_origin["Id"]
        assert behavior["CachePolicyId"] == CACHING_DISABLED
        assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
        assert len(behavior["AllowedMethods"]) == 7
    default = config["DefaultCacheBehavior"]
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    (association,) = default["FunctionAssociations"]
    assert association["EventType"] == "viewer-request"


def test_security_headers(resources):
    (policy,) = of_type(resources, "AWS::CloudFront::ResponseHeadersPolicy").values()
    headers = props(policy)["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    csp = headers["ContentSecurityPolicy"]["ContentSecurityPolicy"]
    for directive in ("default-src 'self'", "img-src 'self' https://avatars.githubusercontent.com data:",
                      "style-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert headers["ContentTypeOptions"]["Override"] is True
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert "ReferrerPolicy" in headers["ReferrerPolicy"]
    config = _distribution(resources)
    policy_id = next(iter(of_type(resources, "AWS::CloudFront::ResponseHeadersPolicy")))
    for behavior in [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]:
        assert behavior["ResponseHeadersPolicyId"] == {"Ref": policy_id}


def test_web_build_is_deployed_and_invalidated(resources):
    (deployment,) = of_type(resources, "Custom::CDKBucketDeployment").values()
    assert props(deployment)["DistributionPaths"] == ["/*"]


# --- monitoring -------------------------------------------------------------------------------------


def test_errors_and_throttles_alarms_for_every_function_and_api_5xx(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm").values()
    (topic,) = of_type(resources, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in props(resources[topic])

    def alarmed(metric: str, function_id: str) -> bool:
        return any(
            props(a)["MetricName"] == metric
            and props(a)["Namespace"] == "AWS/Lambda"
            and props(a)["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
            and props(a)["AlarmActions"] == [{"Ref": topic}]
            for a in alarms
        )

    for function_id in relay_functions(resources):
        assert alarmed("Errors", function_id), function_id
        assert alarmed("Throttles", function_id), function_id
    assert any(
        props(a)["MetricName"] == "5xx" and props(a)["Namespace"] == "AWS/ApiGateway"
        and props(a)["AlarmActions"] == [{"Ref": topic}]
        for a in alarms
    )


def test_alarm_topic_requires_ssl(resources):
    statements = [
        s for p in of_type(resources, "AWS::SNS::TopicPolicy").values()
        for s in props(p)["PolicyDocument"]["Statement"]
    ]
    assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in statements)
