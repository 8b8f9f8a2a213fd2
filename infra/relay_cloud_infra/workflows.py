"""Step Functions Standard workflows (SPEC §2.4): the device-flow poller and its task function.

The state machine is defined by ``workflows/device_flow.asl.json``, the JSONPath ASL file the local stack
also executes (in moto); ``${DeviceFlowTaskArn}`` is substituted with the task function's ARN by
CloudFormation (``DefinitionSubstitutions``) here and by ``relay_cloud.local.workflows`` locally.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .function import FunctionSpecLike, RelayFunction
from .paths import WORKFLOWS_DIR

DEVICE_FLOW_ASL = WORKFLOWS_DIR / "device_flow.asl.json"
DEVICE_FLOW_TASK_SUBSTITUTION = "DeviceFlowTaskArn"


def executions_arn(state_machine: sfn.StateMachine) -> str:
    """arn:aws:states:<region>:<account>:execution:<state machine name>:* — this machine's executions only."""
    return Stack.of(state_machine).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine.state_machine_name}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class Workflows(Construct):
    """The task function of the workflows (a FunctionSpec without routes) and the device-flow machine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        task_spec: FunctionSpecLike,
        make_function: Callable[[Construct, str, FunctionSpecLike], RelayFunction],
        definition_file: Path = DEVICE_FLOW_ASL,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task = make_function(self, "TaskFunction", task_spec)

        # Errors only, without execution data: state inputs and outputs carry user and flow ids (never a
        # secret: the device code stays sealed in the flow item), and nothing in them is needed to alarm.
        self.log_group = logs.LogGroup(self, "DeviceFlowLogs", retention=log_retention)
        self.role = iam.Role(
            self,
            "DeviceFlowRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Agent Relay Cloud device-flow workflow: invokes its task function only",
        )
        self.device_flow = sfn.StateMachine(
            self,
            "DeviceFlow",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(definition_file)),
            definition_substitutions={DEVICE_FLOW_TASK_SUBSTITUTION: self.task.function.function_arn},
            role=self.role,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ERROR, include_execution_data=False),
            tracing_enabled=False,
        )
        # The ASL invokes the unqualified function ARN: exactly that resource, no versions or aliases.
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.task.function.function_arn])
        )

    def grant_device_flow(self, grantee: iam.IGrantable) -> None:
        """Start executions of the device-flow machine, and stop (cancel) its executions only."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.device_flow.state_machine_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[executions_arn(self.device_flow)])
        )
