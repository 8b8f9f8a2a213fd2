"""cdk-nag (AwsSolutions) acknowledgements, each with the reason it holds for this stack.

cdk-nag 3 replaced ``NagSuppressions`` with CDK's ``Validations.of(scope).acknowledge``; each finding is
acknowledged individually (``AwsSolutions-IAM5[Resource::...]``), on the narrowest construct that
produces it, never stack-wide. The acknowledgements are written into the template metadata
(``cdk_nag.rules_to_suppress``) as the audit trail. Unacknowledged findings fail the synth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

from .function import RelayFunction

if TYPE_CHECKING:
    from .stack import RelayCloudStack

DEFAULT_QUALIFIER = "hnb659fds"


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{rule}", reason=reason))


def _logical_id(stack: Stack, construct: IConstruct) -> str:
    return stack.resolve(stack.get_logical_id(construct.node.default_child))


def acknowledge(stack: RelayCloudStack) -> None:
    _secrets(stack)
    _api(stack)
    _web(stack)
    _functions(stack)
    _workflows(stack)
    _bucket_deployment(stack)


def _secrets(stack: RelayCloudStack) -> None:
    _ack(
        stack.github_secret.node.default_child,
        "SMG4",
        "The GitHub OAuth app client secret is issued by GitHub and can only be regenerated in the "
        "GitHub app settings; there is no rotation Lambda for it, the operator rotates it by hand.",
    )
    _ack(
        stack.fly_secret.node.default_child,
        "SMG4",
        "The Fly.io org API token is issued by Fly (fly tokens create org); there is no API to rotate it "
        "from a Lambda, the operator replaces it by hand.",
    )
    if stack.railway_secret is not None:
        _ack(
            stack.railway_secret.node.default_child,
            "SMG4",
            "The Railway workspace API token is created in Railway's account settings; there is no API to "
            "rotate it from a Lambda, the operator replaces it by hand.",
        )


def _api(stack: RelayCloudStack) -> None:
    for route in stack.api.routes:
        _ack(
            route,
            "APIG4",
            "Authorization is enforced in the handlers by the route authorization table (public, session "
            "cookie + CSRF, daemon key, webhook signature), walked route by route in tests/security; an "
            "API Gateway authorizer cannot check session+CSRF and would be a second source of truth.",
        )


def _web(stack: RelayCloudStack) -> None:
    web = stack.web
    distribution = web.distribution.node.default_child
    _ack(
        web.bucket.node.default_child,
        "S1",
        "The site bucket holds only the public static web build, read solely by CloudFront through OAC "
        "and written solely by the BucketDeployment; versioning keeps its history, server access logs "
        "would add a log bucket without audit value.",
    )
    _ack(
        distribution,
        "CFR3",
        "CloudFront standard logs record the full query string (cs-uri-query), and the GitHub OAuth "
        "callback carries the authorization code there; API requests are logged by the HTTP API stage "
        "access log, whose format excludes query strings.",
    )
    _ack(
        distribution,
        "CFR1",
        "Agent Relay Cloud serves developers worldwide; there is no legal or business requirement to "
        "block or allow particular countries.",
    )
    _ack(
        distribution,
        "CFR2",
        "A WAF web ACL is an operator choice (cost per ACL and rule); abusive traffic is bounded by the "
        "HTTP API stage throttling and the per-user rate limits on sensitive routes (SPEC C14).",
    )
    if web.certificate is None:
        _ack(
            distribution,
            "CFR4",
            "Without the domain_name/certificate_arn context the distribution uses the default "
            "*.cloudfront.net certificate, which always permits TLSv1; with a custom certificate the "
            "security policy is TLSv1.2_2021 and this acknowledgement is not added.",
        )


def _functions(stack: RelayCloudStack) -> None:
    table_id = _logical_id(stack, stack.data.table)
    for construct in stack.node.find_all():
        if not isinstance(construct, RelayFunction):
            continue
        _ack(
            construct.function,
            "L1",
            "Pinned to python3.12 on purpose: pyproject requires-python <3.13 and the core layer is built "
            "from cp312 wheels with 3.12 bytecode; a runtime move is a deliberate project-wide upgrade.",
        )
        grants = set(construct.spec.grants)
        if grants & {"table:read", "table:write"}:
            _ack(
                construct.role,
                f"IAM5[Resource::<{table_id}.Arn>/index/*]",
                "Queries on the table's own GSIs (gsi1 items by owner, gsi2 refresh due bucket) need the "
                "index ARNs; the wildcard covers only this table's indexes (TableV2 grant).",
            )
        if "table:write" in grants:
            for action in ("kms:ReEncrypt*", "kms:GenerateDataKey*"):
                _ack(
                    construct.role,
                    f"IAM5[Action::{action}]",
                    "Generated by TableV2.grant_write_data for the table's customer-managed key, which "
                    "DynamoDB uses on the caller's behalf; scoped to the table key, never the vault key.",
                )


def _workflows(stack: RelayCloudStack) -> None:
    workflows = stack.workflows
    if workflows is None:
        return
    machine = workflows.device_flow
    _ack(
        machine,
        "SF1",
        "The device-flow workflow logs ERROR events only, without execution data: every poll is a state "
        "transition, and inputs/outputs carry user and flow ids; failures are alarmed on ExecutionsFailed "
        "and the execution history keeps the rest for 90 days.",
    )
    _ack(
        machine,
        "SF2",
        "X-Ray tracing is off by design (SPEC C14: tracing optional, off by default like the functions'); "
        "the workflow only waits and calls one function whose logs carry the flow id.",
    )
    _ack(
        workflows.role,
        "IAM5[Resource::*]",
        "Generated by StateMachine logging: the CloudWatch Logs vended-delivery actions (CreateLogDelivery, "
        "PutResourcePolicy, DescribeLogGroups, ...) do not support resource-level permissions.",
    )
    executions = (
        f"IAM5[Resource::arn:<AWS::Partition>:states:{stack.region}:{stack.account}:execution:"
        f"<{_logical_id(stack, machine)}.Name>:*]"
    )
    for construct in stack.node.find_all():
        if isinstance(construct, RelayFunction) and "workflow:device_flow" in construct.spec.grants:
            _ack(
                construct.role,
                executions,
                "StopExecution (cancelling a device flow) needs the execution ARN, which is named after the "
                "flow; the wildcard covers only the executions of the device-flow state machine.",
            )
    for machine in (workflows.provision, workflows.teardown):
        _ack(
            machine,
            "SF1",
            "The workspace workflows log ERROR events only, without execution data: inputs and outputs carry "
            "workspace and user ids; every step records its progress as workspace events, failures are alarmed "
            "on ExecutionsFailed and the execution history keeps the rest for 90 days.",
        )
        _ack(
            machine,
            "SF2",
            "X-Ray tracing is off by design (SPEC C14: tracing optional, off by default like the functions'); "
            "each step is one call of the workflows function, whose logs carry the workspace id.",
        )
    _ack(
        workflows.workspace_role,
        "IAM5[Resource::*]",
        "Generated by StateMachine logging: the CloudWatch Logs vended-delivery actions (CreateLogDelivery, "
        "PutResourcePolicy, DescribeLogGroups, ...) do not support resource-level permissions.",
    )
    provision_executions = (
        f"IAM5[Resource::arn:<AWS::Partition>:states:{stack.region}:{stack.account}:execution:"
        f"<{_logical_id(stack, workflows.provision)}.Name>:*]"
    )
    for construct in stack.node.find_all():
        if isinstance(construct, RelayFunction) and "workflow:provision" in construct.spec.grants:
            _ack(
                construct.role,
                provision_executions,
                "StopExecution (a workspace deleted while it provisions) needs the execution ARN, named after "
                "the workspace; the wildcard covers only the executions of the provisioning state machine.",
            )
    teardown_executions = (
        f"IAM5[Resource::arn:<AWS::Partition>:states:{stack.region}:{stack.account}:execution:"
        f"<{_logical_id(stack, workflows.teardown)}.Name>:*]"
    )
    for construct in stack.node.find_all():
        if isinstance(construct, RelayFunction) and "workflow:teardown" in construct.spec.grants:
            _ack(
                construct.role,
                teardown_executions,
                "DescribeExecution (a repeated delete checks whether the previous teardown still runs) needs "
                "the execution ARN, named after the workspace and the attempt; the wildcard covers only the "
                "executions of the teardown state machine.",
            )


def _bucket_deployment(stack: RelayCloudStack) -> None:
    providers = [c for c in stack.node.children if c.node.id.startswith("Custom::CDKBucketDeployment")]
    qualifier = stack.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER
    asset_bucket = f"cdk-{qualifier}-assets-{stack.account}-{stack.region}"
    deploy_reason = (
        "aws-cdk-lib's BucketDeployment provider (runs only during deployments) copies the web build "
        "from the CDK asset bucket to the site bucket and invalidates the distribution;"
    )
    for provider in providers:
        _ack(
            provider,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            f"{deploy_reason} CDK gives its role the basic execution policy for its own logs.",
        )
        for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"):
            _ack(
                provider,
                f"IAM5[Action::{action}]",
                f"{deploy_reason} CDK's grantRead/grantReadWrite action groups, limited to those two buckets.",
            )
        _ack(
            provider,
            f"IAM5[Resource::arn:<AWS::Partition>:s3:::{asset_bucket}/*]",
            f"{deploy_reason} it reads the uploaded web build objects from the bootstrap asset bucket.",
        )
        _ack(
            provider,
            f"IAM5[Resource::<{_logical_id(stack, stack.web.bucket)}.Arn>/*]",
            f"{deploy_reason} it writes and prunes objects of the site bucket only.",
        )
        _ack(
            provider,
            "IAM5[Resource::*]",
            f"{deploy_reason} cloudfront:CreateInvalidation/GetInvalidation do not support resource-level "
            "scoping in the policy CDK generates.",
        )
        _ack(
            provider,
            "L1",
            f"{deploy_reason} aws-cdk-lib pins the provider's runtime and upgrades it with the library.",
        )
