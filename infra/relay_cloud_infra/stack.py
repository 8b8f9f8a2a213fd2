"""RelayCloudStack: composes the capability constructs."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from functions.manifest import FUNCTIONS, SCHEDULES, FunctionSpec

from . import nag
from .api import Api
from .bundling import function_code, layer_code
from .data import Data
from .function import RelayFunction, Resources, production_environment
from .monitoring import Monitoring
from .paths import WEB_DIR
from .schedules import Schedules, ScheduleSpec
from .vault import Vault
from .web import Web


def _construct_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


class RelayCloudStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: tuple[FunctionSpec, ...] = FUNCTIONS,
        schedules: tuple[tuple[str, int, str], ...] = SCHEDULES,
        web_dir: Path = WEB_DIR,
        domain_name: str | None = None,
        certificate_arn: str | None = None,
        github_client_id: str = "",
        alarm_email: str | None = None,
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

        self._resources = Resources(table=self.data.table, vault=self.vault, github_secret=self.github_secret)
        self._environment = production_environment(
            table_name=self.data.table.table_name,
            kms_key_id=self.vault.key.key_arn,
            public_url=self.public_url,
            github_client_id=github_client_id,
            github_client_secret_arn=self.github_secret.secret_arn,
        )

        self.functions: dict[str, RelayFunction] = {}
        for spec in functions:
            function = self._function(self, f"{_construct_name(spec.name)}Function", spec)
            self.api.add_function_routes(spec.name, spec.routes, function.function)
            self.functions[spec.name] = function
        self.schedules = Schedules(self, "Schedules", entries=schedules, make_function=self._function)
        watched = {
            **self.functions,
            **{f"schedule-{name}": function for name, function in self.schedules.functions.items()},
        }
        for name, function in watched.items():
            self.monitoring.watch_function(name, function.function)
        self.monitoring.watch_api(self.api.http_api)

        CfnOutput(self, "PublicUrl", value=self.public_url)
        CfnOutput(self, "ApiEndpoint", value=self.api.http_api.api_endpoint)
        CfnOutput(self, "TableName", value=self.data.table.table_name)
        CfnOutput(self, "GitHubClientSecretArn", value=self.github_secret.secret_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)

        nag.acknowledge(self)

    def _function(self, scope: Construct, construct_id: str, spec: FunctionSpec | ScheduleSpec) -> RelayFunction:
        return RelayFunction(
            scope,
            construct_id,
            spec=spec,
            code=function_code(spec.handler),
            layer=self.layer,
            resources=self._resources,
            environment=self._environment,
        )
