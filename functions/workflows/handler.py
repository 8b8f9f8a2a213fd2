"""Step Functions tasks of the workflows (workflows/*.asl.json): one function, dispatched on the input.

Device flow (device_flow.asl.json): {"action": "poll" | "fail", "flow_id", "user_id", "error"?} →
{"status", "interval"}.

Workspaces (provision_workspace.asl.json, delete_workspace.asl.json): {"task": "workspace.<step>",
"workspace_id", "user_id", ...the step's own fields} → the step's small result (no secrets: the daemon
key minted by ``workspace.secrets`` goes to the provider only).

An unreachable upstream raises ``UpstreamUnavailable``, the error name the workflows retry on.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from relay_cloud.composition import container
from relay_cloud.domain.errors import ValidationFailed
from relay_cloud.observability import logger

# task → (method of ProvisioningService, the input fields it takes besides workspace_id and user_id)
WORKSPACE_TASKS = {
    "workspace.app": ("app", ()),
    "workspace.ips": ("ips", ()),
    "workspace.volume": ("volume", ()),
    "workspace.secrets": ("secrets", ()),
    "workspace.machine": ("machine", ("deadline_seconds",)),
    "workspace.wait": ("wait", ("deadline", "polls", "wait_seconds")),
    "workspace.health": ("health", ()),
    "workspace.finish": ("finish", ()),
    "workspace.compensate": ("compensate", ("step",)),
    "workspace.fail": ("fail", ("step", "failure", "compensation")),
    "workspace.teardown_domain": ("teardown_domain", ()),
    "workspace.teardown_machine": ("teardown_machine", ()),
    "workspace.teardown_volume": ("teardown_volume", ()),
    "workspace.teardown_ips": ("teardown_ips", ()),
    "workspace.teardown_app": ("teardown_app", ()),
    "workspace.teardown_daemon": ("teardown_daemon", ()),
    "workspace.teardown_forget": ("teardown_forget", ()),
    "workspace.teardown_failed": ("teardown_failed", ("step", "failure")),
}


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    task = event.get("task")
    if task is not None:
        return workspace_task(task, event)
    providers = container().providers
    logger.append_keys(flow_id=event.get("flow_id"), action=event.get("action"))
    if event.get("action") == "fail":
        return providers.fail_flow(event["user_id"], event["flow_id"], event.get("error") or "workflow_failed")
    return providers.poll_flow(event["user_id"], event["flow_id"])


def workspace_task(task: str, event: dict) -> dict:
    if task not in WORKSPACE_TASKS:
        raise ValidationFailed("Unknown workflow task", code="UNKNOWN_TASK")
    method, fields = WORKSPACE_TASKS[task]
    logger.append_keys(task=task, workspace_id=event.get("workspace_id"))
    arguments = {name: event[name] for name in fields if name in event}
    return getattr(container().provisioning, method)(event["workspace_id"], event["user_id"], **arguments)
