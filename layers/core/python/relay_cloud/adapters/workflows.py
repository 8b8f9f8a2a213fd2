"""Starting and stopping Step Functions executions (the durable long flows of SPEC §2.4)."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from relay_cloud.domain.errors import DependencyUnavailable


class StepFunctionsWorkflow:
    def __init__(self, client, state_machine_arn: str):
        self._client = client
        self._arn = state_machine_arn

    def start(self, name: str, payload: dict) -> str:
        """Start an execution named ``name`` (idempotent for the same name and input)."""
        try:
            response = self._client.start_execution(stateMachineArn=self._arn, name=name, input=json.dumps(payload))
        except (ClientError, BotoCoreError) as exc:
            raise DependencyUnavailable("The workflow could not be started", code="WORKFLOW_UNAVAILABLE") from exc
        return response["executionArn"]

    def status(self, execution_arn: str) -> str | None:
        """The execution's status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE), or
        None when there is no such execution."""
        try:
            return self._client.describe_execution(executionArn=execution_arn)["status"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ExecutionDoesNotExist", "InvalidArn"):
                return None
            raise DependencyUnavailable("The workflow could not be read", code="WORKFLOW_UNAVAILABLE") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("The workflow could not be read", code="WORKFLOW_UNAVAILABLE") from exc

    def stop(self, execution_arn: str, *, cause: str) -> None:
        try:
            self._client.stop_execution(executionArn=execution_arn, cause=cause)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ExecutionDoesNotExist", "InvalidArn"):
                return
            raise DependencyUnavailable("The workflow could not be stopped", code="WORKFLOW_UNAVAILABLE") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("The workflow could not be stopped", code="WORKFLOW_UNAVAILABLE") from exc
