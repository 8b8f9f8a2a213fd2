"""Alarms on function errors and throttles, failed or timed-out workflow executions and API 5xx, delivered
to an encrypted SNS topic."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alarm_email: str | None = None) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            alias="alias/relay-cloud-alarms",
            description="Agent Relay Cloud: encryption of the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes alarm notifications to the encrypted topic with this key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name="Agent Relay Cloud alarms", master_key=self.key, enforce_ssl=True
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)

    def watch_function(self, name: str, function: lambda_.IFunction, *, error_threshold: int = 1) -> None:
        self._alarm(
            f"{name}-errors",
            function.metric_errors(period=PERIOD, statistic="Sum"),
            error_threshold,
            f"Function {name} raised errors (unhandled exceptions or timeouts)",
        )
        self._alarm(
            f"{name}-throttles",
            function.metric_throttles(period=PERIOD, statistic="Sum"),
            1,
            f"Function {name} was throttled (account concurrency exhausted)",
        )

    def watch_state_machine(self, name: str, state_machine: sfn.IStateMachine) -> None:
        """Failed executions (SPEC C14: retries exhausted, or a task error the workflow could not record)
        and timed-out ones (an execution outliving every device authorization)."""
        self._alarm(
            f"{name}-executions-failed",
            state_machine.metric_failed(period=PERIOD, statistic="Sum"),
            1,
            f"Workflow {name}: executions failed",
        )
        self._alarm(
            f"{name}-executions-timed-out",
            state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
            1,
            f"Workflow {name}: executions timed out",
        )

    def watch_api(self, api: apigwv2.HttpApi, threshold: int = 5) -> None:
        self._alarm(
            "api-5xx",
            api.metric_server_error(period=PERIOD, statistic="Sum"),
            threshold,
            f"The HTTP API answered {threshold}+ 5xx responses within 5 minutes",
        )
