"""The HTTP API: one Lambda integration per function, one route per route key of the manifest."""

from __future__ import annotations

import json

import jsii
from aws_cdk import Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

# Access log fields. Deliberately no $context.path / rawQueryString / querystring: the GitHub OAuth
# callback carries the authorization code in the query string, and it must never reach a log.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "responseLatency": "$context.responseLatency",
    "integrationError": "$context.integrationErrorMessage",
}
ACCESS_LOG_FORMAT = json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """jsii interface value for HttpStage(access_log_settings=...): a plain dict does not deserialize."""

    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


def split_route_key(route_key: str) -> tuple[apigwv2.HttpMethod, str]:
    method, path = route_key.split(" ", 1)
    return apigwv2.HttpMethod[method], path


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rate_limit: int = 100,
        burst_limit: int = 200,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            description="Agent Relay Cloud public HTTP API (served under /api and /health by CloudFront)",
            create_default_stage=False,
        )
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention)
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            access_log_settings=_AccessLogSettings(
                apigwv2.LogGroupLogDestination(self.access_logs), apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT)
            ),
        )
        self.route_keys: list[str] = []
        self.routes: list[apigwv2.HttpRoute] = []

    @property
    def origin_domain(self) -> str:
        """The execute-api host CloudFront forwards /api/* and /health to."""
        stack = Stack.of(self)
        return f"{self.http_api.api_id}.execute-api.{stack.region}.{stack.url_suffix}"

    def add_function_routes(self, name: str, routes: tuple[str, ...], function: lambda_.IFunction) -> None:
        integration = HttpLambdaIntegration(f"{name}-integration", function)
        for route_key in routes:
            method, path = split_route_key(route_key)
            self.routes += self.http_api.add_routes(path=path, methods=[method], integration=integration)
            self.route_keys.append(route_key)
