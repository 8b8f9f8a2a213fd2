"""Step Functions Standard workflows (SPEC §2.4): the device-flow poller, the workspace provisioning and
teardown (SPEC C6), and their one task function.

Each state machine is defined by a JSONPath ASL file in ``workflows/`` that the local stack also executes
(in moto): ``device_flow.asl.json`` (``${DeviceFlowTaskArn}``), ``provision_workspace.asl.json`` and
``delete_workspace.asl.json`` (``${WorkspaceTaskArn}``); the placeholders are substituted with the task
function's ARN by CloudFormation (``DefinitionSubstitutions``) here and by ``relay_cloud.local.workflows``
locally.
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
PROVISION_ASL = WORKFLOWS_DIR / "provision_workspace.asl.json"
TEARDOWN_ASL = WORKFLOWS_DIR / "delete_workspace.asl.json"
WORKSPACE_TASK_SUBSTITUTION = "WorkspaceTaskArn"


def executions_arn(state_machine: sfn.StateMachine) -> str:
    """arn:aws:states:<region>:<account>:execution:<state machine name>:* — this machine's executions only."""
    return Stack.of(state_machine).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine.state_machine_name}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class Workflows(Construct):
    """The task function of the workflows (a FunctionSpec without routes), the device-flow machine and the
    workspace provisioning and teardown machines."""

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

        # Workspace provisioning and teardown: their own role (the same single permission) and log groups.
        # Errors only, without execution data: inputs carry workspace and user ids; the daemon key never
        # passes through a state (the secrets step sends it straight to the provider).
        self.workspace_role = iam.Role(
            self,
            "WorkspaceRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Agent Relay Cloud workspace provisioning and teardown: invoke their task function only",
        )
        self.workspace_role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.task.function.function_arn])
        )
        self.provision = self._workspace_machine("ProvisionWorkspace", PROVISION_ASL, log_retention)
        self.teardown = self._workspace_machine("DeleteWorkspace", TEARDOWN_ASL, log_retention)

    def _workspace_machine(self, construct_id: str, definition_file: Path,
                           log_retention: logs.RetentionDays) -> sfn.StateMachine:
        log_group = logs.LogGroup(self, f"{construct_id}Logs", retention=log_retention)
        return sfn.StateMachine(
            self,
            construct_id,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(definition_file)),
            definition_substitutions={WORKSPACE_TASK_SUBSTITUTION: self.task.function.function_arn},
            role=self.workspace_role,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ERROR, include_execution_data=False),
            tracing_enabled=False,
        )

    @property
    def state_machines(self) -> dict[str, sfn.StateMachine]:
        """{alarm name: state machine}."""
        return {"device-flow": self.device_flow, "provision-workspace": self.provision,
                "delete-workspace": self.teardown}

    def grant_device_flow(self, grantee: iam.IGrantable) -> None:
        """Start executions of the device-flow machine, and stop (cancel) its executions only."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.device_flow.state_machine_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[executions_arn(self.device_flow)])
        )

    def grant_provision(self, grantee: iam.IGrantable) -> None:
        """Start provisioning executions, and stop its executions only (a delete stops a running one)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.provision.state_machine_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[executions_arn(self.provision)])
        )

    def grant_teardown(self, grantee: iam.IGrantable) -> None:
        """Start teardown executions, and read its executions only (a repeated delete starts a new teardown
        only when the previous one is no longer running)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.teardown.state_machine_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions_arn(self.teardown)])
        )
