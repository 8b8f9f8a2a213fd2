"""The one function construct: shared defaults, least-privilege grants, production-only configuration."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .vault import Vault

if TYPE_CHECKING:
    from .workflows import Workflows

METRICS_NAMESPACE = "AgentRelayCloud"
KNOWN_GRANTS = ("table:read", "table:write", "vault", "github_secret", "workflow:device_flow", "fly_secret",
                "railway_secret", "workflow:provision", "workflow:teardown")
DEVICE_FLOW_ARN_VARIABLE = "RELAY_DEVICE_FLOW_STATE_MACHINE_ARN"
PROVISION_ARN_VARIABLE = "RELAY_PROVISION_STATE_MACHINE_ARN"
TEARDOWN_ARN_VARIABLE = "RELAY_TEARDOWN_STATE_MACHINE_ARN"
FLY_TOKEN_ARN_VARIABLE = "RELAY_FLY_API_TOKEN_ARN"
RAILWAY_TOKEN_ARN_VARIABLE = "RELAY_RAILWAY_API_TOKEN_ARN"
CUSTOM_PROVIDERS_VARIABLE = "RELAY_CUSTOM_PROVIDERS"
CUSTOM_PROVIDER_URLS = ("device_authorization_url", "token_url", "revoke_url", "userinfo_url")
CUSTOM_PROVIDER_REQUIRED = ("device_authorization_url", "token_url")  # for the device flow


class SandboxConfigurationError(ValueError):
    """A deployed function was about to be configured for a sandbox or a non-production environment."""


class FunctionSpecLike(Protocol):
    name: str
    grants: tuple[str, ...]
    memory_mb: int
    timeout_s: int

    @property
    def handler(self) -> str: ...


@dataclass(frozen=True)
class Resources:
    """What grants refer to: ``table:*`` → table, ``vault`` → vault key, ``github_secret`` → secret,
    ``workflow:device_flow`` / ``workflow:provision`` / ``workflow:teardown`` → those state machines (None
    until the workflows construct exists), ``fly_secret`` → the Fly API token's secret, with the Fly and
    workspace settings (``fly_environment``) every function that talks to Fly reads, ``railway_secret`` →
    the Railway API token's secret with ``railway_environment`` (None when the deployment has no Railway
    workspace: the grant then gives nothing and Railway stays off)."""

    table: dynamodb.ITableV2
    vault: Vault
    github_secret: secretsmanager.ISecret
    workflows: Workflows | None = None
    fly_secret: secretsmanager.ISecret | None = None
    fly_environment: Mapping[str, str] | None = None
    railway_secret: secretsmanager.ISecret | None = None
    railway_environment: Mapping[str, str] | None = None


def production_environment(
    *,
    table_name: str,
    kms_key_id: str,
    public_url: str,
    github_client_id: str,
    github_client_secret_arn: str,
) -> dict[str, str]:
    """The RELAY_* variables every deployed function reads (see relay_cloud.config)."""
    return {
        "RELAY_ENV": "production",
        "RELAY_TABLE_NAME": table_name,
        "RELAY_KMS_KEY_ID": kms_key_id,
        "RELAY_PUBLIC_URL": public_url,
        "RELAY_GITHUB_CLIENT_ID": github_client_id,
        "RELAY_GITHUB_CLIENT_SECRET_ARN": github_client_secret_arn,
    }


def check_production_environment(environment: Mapping[str, str]) -> None:
    """Refuse, at synth, anything that would point a deployed function at a sandbox.

    RELAY_ENV must be ``production``; no value may mention ``/_sandbox`` or use plain http; URL
    variables must be https (tokens such as the CloudFront domain are accepted behind ``https://``).
    """
    if environment.get("RELAY_ENV") != "production":
        raise SandboxConfigurationError(
            f"deployed functions run with RELAY_ENV=production, not {environment.get('RELAY_ENV')!r}"
        )
    for name, value in environment.items():
        text = str(value)  # unresolved tokens render as "${Token[...]}" and pass these checks
        if "_sandbox" in text or "http://" in text.lower():
            raise SandboxConfigurationError(f"{name}={text!r}: sandbox or plain-http upstreams never deploy")
        if name.endswith("_URL") and not text.startswith("https://"):
            raise SandboxConfigurationError(f"{name} must be an https URL in a deployed stack")
    if environment.get(CUSTOM_PROVIDERS_VARIABLE):
        check_custom_providers(str(environment[CUSTOM_PROVIDERS_VARIABLE]))


def check_custom_providers(raw: str) -> None:
    """The admin-configured OAuth/OIDC providers (context ``custom_providers``) must be a valid registry
    whose every endpoint is an https URL of a real service, never a sandbox."""
    from relay_cloud.domain.providers import RegistryError, custom_providers

    try:
        specs = custom_providers(raw)
    except RegistryError as exc:
        raise SandboxConfigurationError(f"{CUSTOM_PROVIDERS_VARIABLE}: {exc}") from exc
    for spec in specs:
        if spec.client_secret:
            raise SandboxConfigurationError(
                f"{CUSTOM_PROVIDERS_VARIABLE}[{spec.id}]: a client secret never goes into a function's environment; "
                "store it in Secrets Manager and give client_secret_arn"
            )
        for name in CUSTOM_PROVIDER_URLS:
            url = getattr(spec, name)
            if url is None and not (name in CUSTOM_PROVIDER_REQUIRED and "device_flow" in spec.methods):
                continue
            parts = urlsplit(str(url))
            if parts.scheme != "https" or not parts.hostname or "_sandbox" in str(url):
                raise SandboxConfigurationError(
                    f"{CUSTOM_PROVIDERS_VARIABLE}[{spec.id}].{name} must be an https URL of the real provider"
                )


def custom_providers_context(value) -> str:
    """Context ``custom_providers``: a JSON string (or, from cdk.json, the list itself); "" when unset."""
    if value in (None, ""):
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def workspace_sizes_context(value) -> str:
    """Context ``workspace_sizes``: JSON (or, from cdk.json, the object itself) of the named machine sizes,
    validated at synth as the functions validate ``RELAY_WORKSPACE_SIZES``; "" = the defaults."""
    if value in (None, ""):
        return ""
    raw = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    from relay_cloud.domain.compute import SizeError, parse_sizes

    try:
        parse_sizes(raw)
    except SizeError as exc:
        raise ValueError(f"context workspace_sizes: {exc}") from exc
    return raw


class RelayFunction(Construct):
    """A Lambda function with the project's defaults.

    arm64, python3.12, the core layer, JSON logs into a log group with retention, Powertools settings,
    tracing off unless asked, no reserved concurrency, memory and timeout from the spec, and exactly the
    permissions its grants name.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpecLike,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        resources: Resources,
        environment: Mapping[str, str],
        tracing: bool = False,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
    ) -> None:
        super().__init__(scope, construct_id)
        unknown = [grant for grant in spec.grants if grant not in KNOWN_GRANTS]
        if unknown:
            raise ValueError(f"function {spec.name}: unknown grants {unknown}; known: {KNOWN_GRANTS}")
        full_environment = {
            **dict(environment),
            **self._grant_environment(spec, resources),
            "POWERTOOLS_SERVICE_NAME": spec.name,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        check_production_environment(full_environment)
        self.spec = spec

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention)
        # Our own role: no AWSLambdaBasicExecutionRole (it allows writing to every log group).
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Agent Relay Cloud function {spec.name}",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=spec.handler,
            code=code,
            layers=[layer],
            role=self.role,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            environment=full_environment,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE if tracing else lambda_.Tracing.DISABLED,
            description=f"Agent Relay Cloud: {spec.name}",
        )
        self.function.node.add_dependency(self.log_group)
        self._grant(spec.grants, resources)

    @staticmethod
    def _grant_environment(spec: FunctionSpecLike, resources: Resources) -> dict[str, str]:
        environment = {}
        machines = {"workflow:device_flow": (DEVICE_FLOW_ARN_VARIABLE, "device_flow"),
                    "workflow:provision": (PROVISION_ARN_VARIABLE, "provision"),
                    "workflow:teardown": (TEARDOWN_ARN_VARIABLE, "teardown")}
        for grant, (variable, attribute) in machines.items():
            if grant not in spec.grants:
                continue
            if resources.workflows is None:
                raise ValueError(f"function {spec.name}: grant {grant} needs the workflows construct first")
            environment[variable] = getattr(resources.workflows, attribute).state_machine_arn
        if "fly_secret" in spec.grants:
            if resources.fly_secret is None:
                raise ValueError(f"function {spec.name}: grant fly_secret needs the Fly token secret")
            environment |= {**dict(resources.fly_environment or {}),
                            FLY_TOKEN_ARN_VARIABLE: resources.fly_secret.secret_arn}
        # Without the secret (no railway_workspace_id context) the function gets no Railway setting at all,
        # so its Settings offer Fly only (composition.computes).
        if "railway_secret" in spec.grants and resources.railway_secret is not None:
            environment |= {**dict(resources.railway_environment or {}),
                            RAILWAY_TOKEN_ARN_VARIABLE: resources.railway_secret.secret_arn}
        return environment

    def _grant(self, grants: tuple[str, ...], resources: Resources) -> None:
        for grant in grants:
            if grant == "table:read":
                resources.table.grant_read_data(self.function)
            elif grant == "table:write":
                resources.table.grant_write_data(self.function)
            elif grant == "vault":
                resources.vault.grant_envelope(self.function)
            elif grant == "github_secret":
                resources.github_secret.grant_read(self.function)
            elif grant == "workflow:device_flow":
                resources.workflows.grant_device_flow(self.function)
            elif grant == "workflow:provision":
                resources.workflows.grant_provision(self.function)
            elif grant == "workflow:teardown":
                resources.workflows.grant_teardown(self.function)
            elif grant == "fly_secret":
                resources.fly_secret.grant_read(self.function)
            elif grant == "railway_secret" and resources.railway_secret is not None:
                resources.railway_secret.grant_read(self.function)
