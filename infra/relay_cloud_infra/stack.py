"""RelayCloudStack: composes the capability constructs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.manifest import FUNCTIONS, SCHEDULES, FunctionSpec, ScheduleSpec
from relay_cloud.domain.providers import custom_providers

from . import nag
from .api import Api
from .bundling import function_code, layer_code
from .data import Data
from .function import CUSTOM_PROVIDERS_VARIABLE, RelayFunction, Resources, production_environment
from .monitoring import Monitoring
from .paths import WEB_DIR
from .schedules import Schedules
from .vault import Vault
from .web import Web
from .workflows import Workflows

WORKFLOWS_FUNCTION = "workflows"  # the manifest entry whose handler is the workflows' task


def _construct_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


class RelayCloudStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: tuple[FunctionSpec, ...] = FUNCTIONS,
        schedules: tuple[ScheduleSpec, ...] = SCHEDULES,
        web_dir: Path = WEB_DIR,
        domain_name: str | None = None,
        certificate_arn: str | None = None,
        github_client_id: str = "",
        custom_providers: str = "",
        alarm_email: str | None = None,
        fly_org: str = "personal",
        workspace_region: str = "iad",
        workspace_image: str = "",
        workspace_sizes: str = "",
        railway_workspace_id: str = "",
        api_rate_limit: int = 100,
        api_burst_limit: int = 200,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.data = Data(self, "Data")
        self.vault = Vault(self, "Vault")
        self.github_secret = secretsmanager.Secret(
            self,
            "GitHubClientSecret",
            description="Client secret of the GitHub OAuth app; set its value after the first deploy",
        )
        self.fly_secret = secretsmanager.Secret(
            self,
            "FlyApiToken",
            description="Fly.io org API token for workspaces' compute; set its value after the first deploy",
        )
        # Railway is optional: without a Railway workspace id there is no secret, no grant and no Railway
        # setting in any function, so workspaces offer Fly only.
        self.railway_secret: secretsmanager.Secret | None = None
        if railway_workspace_id:
            self.railway_secret = secretsmanager.Secret(
                self,
                "RailwayApiToken",
                description="Railway workspace API token for workspaces' compute; set its value after the first "
                "deploy",
            )
        self.layer = lambda_.LayerVersion(
            self,
            "CoreLayer",
            code=layer_code(),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="relay_cloud and its runtime dependencies (unchecked-hash bytecode)",
        )
        self.api = Api(self, "Api", rate_limit=api_rate_limit, burst_limit=api_burst_limit)
        self.web = Web(
            self,
            "Web",
            api_origin_domain=self.api.origin_domain,
            web_dir=web_dir,
            domain_name=domain_name,
            certificate_arn=certificate_arn,
        )
        public_host = domain_name or self.web.distribution.distribution_domain_name
        self.public_url = f"https://{public_host}"
        self.monitoring = Monitoring(self, "Monitoring", alarm_email=alarm_email)

        # What every function granted fly_secret reads besides the token's ARN (see relay_cloud.config).
        fly_environment = {"RELAY_FLY_ORG": fly_org, "RELAY_WORKSPACE_REGION": workspace_region}
        if workspace_image:
            fly_environment["RELAY_WORKSPACE_IMAGE"] = workspace_image
        if workspace_sizes:
            fly_environment["RELAY_WORKSPACE_SIZES"] = workspace_sizes
        # What every function granted railway_secret reads besides the token's ARN.
        railway_environment = {"RELAY_RAILWAY_WORKSPACE_ID": railway_workspace_id}
        self._resources = Resources(table=self.data.table, vault=self.vault, github_secret=self.github_secret,
                                    fly_secret=self.fly_secret, fly_environment=fly_environment,
                                    railway_secret=self.railway_secret, railway_environment=railway_environment)
        self._environment = production_environment(
            table_name=self.data.table.table_name,
            kms_key_id=self.vault.key.key_arn,
            public_url=self.public_url,
            github_client_id=github_client_id,
            github_client_secret_arn=self.github_secret.secret_arn,
        )
        # Admin-configured OAuth/OIDC providers (with their client secrets): only where the vault is.
        self._custom_providers = custom_providers

        self.functions: dict[str, RelayFunction] = {}
        self.workflows: Workflows | None = None
        task_spec = next((spec for spec in functions if spec.name == WORKFLOWS_FUNCTION), None)
        if task_spec is not None:
            self.workflows = Workflows(self, "Workflows", task_spec=task_spec, make_function=self._function)
            self.functions[task_spec.name] = self.workflows.task
            self._resources = replace(self._resources, workflows=self.workflows)
            for name, machine in self.workflows.state_machines.items():
                self.monitoring.watch_state_machine(name, machine)
        for spec in functions:
            if spec.name in self.functions:
                continue
            function = self._function(self, f"{_construct_name(spec.name)}Function", spec)
            if spec.serves_http:
                self.api.add_function_routes(spec.name, spec.routes, function.function)
            self.functions[spec.name] = function
        self.schedules = Schedules(self, "Schedules", entries=schedules, make_function=self._function)
        watched = [(spec.name, self.functions[spec.name], spec) for spec in functions] + [
            (f"schedule-{spec.name}", self.schedules.functions[spec.name], spec) for spec in schedules
        ]
        for name, function, spec in watched:
            self.monitoring.watch_function(name, function.function, error_threshold=spec.error_alarm_threshold)
        self.monitoring.watch_api(self.api.http_api)

        CfnOutput(self, "PublicUrl", value=self.public_url)
        CfnOutput(self, "ApiEndpoint", value=self.api.http_api.api_endpoint)
        CfnOutput(self, "TableName", value=self.data.table.table_name)
        CfnOutput(self, "GitHubClientSecretArn", value=self.github_secret.secret_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "FlyApiTokenSecretArn", value=self.fly_secret.secret_arn)
        if self.railway_secret is not None:
            CfnOutput(self, "RailwayApiTokenSecretArn", value=self.railway_secret.secret_arn)
        if self.workflows is not None:
            CfnOutput(self, "DeviceFlowStateMachineArn", value=self.workflows.device_flow.state_machine_arn)
            CfnOutput(self, "ProvisionWorkspaceStateMachineArn", value=self.workflows.provision.state_machine_arn)
            CfnOutput(self, "DeleteWorkspaceStateMachineArn", value=self.workflows.teardown.state_machine_arn)

        nag.acknowledge(self)

    def _function(self, scope: Construct, construct_id: str, spec: FunctionSpec | ScheduleSpec) -> RelayFunction:
        environment = dict(self._environment)
        if "vault" in spec.grants and self._custom_providers:
            environment[CUSTOM_PROVIDERS_VARIABLE] = self._custom_providers
        function = RelayFunction(
            scope,
            construct_id,
            spec=spec,
            code=function_code(spec.handler),
            layer=self.layer,
            resources=self._resources,
            environment=environment,
        )
        secret_arns = sorted({p.client_secret_arn for p in custom_providers(self._custom_providers) if p.client_secret_arn})
        if "vault" in spec.grants and secret_arns:
            # Custom providers' client secrets stay in Secrets Manager; only the functions that talk to
            # the providers may read them, and only those secrets.
            function.function.add_to_role_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=secret_arns)
            )
        return function
