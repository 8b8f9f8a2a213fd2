"""Step Functions task of the device-flow workflow (workflows/device_flow.asl.json).

Input: {"action": "poll" | "fail", "flow_id", "user_id", "error"?}; output {"status", "interval"}.
An unreachable provider raises ``UpstreamUnavailable``, the error name the workflow retries on.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from relay_cloud.composition import container
from relay_cloud.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    providers = container().providers
    logger.append_keys(flow_id=event.get("flow_id"), action=event.get("action"))
    if event.get("action") == "fail":
        return providers.fail_flow(event["user_id"], event["flow_id"], event.get("error") or "workflow_failed")
    return providers.poll_flow(event["user_id"], event["flow_id"])
