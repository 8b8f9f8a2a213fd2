"""EventBridge schedule targets (functions.manifest.SCHEDULES).

``refresh_sweep``: every 5 minutes, refresh the OAuth connections whose refresh is due (SPEC C3). The
sweep stops taking new credentials early enough to finish the ones in flight (provider retries included)
before the function times out; whatever it leaves behind stays in its bucket for the next run.

``workspace_reconcile``: every 5 minutes, every running or moving workspace follows its machine's state as
the compute provider reports it (docs/design/workspaces.md), closing running periods into the meter.
"""

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from relay_cloud.composition import container
from relay_cloud.observability import logger, metrics

# Time a credential already taken may still need: the retry budget, one HTTP timeout, persisting.
IN_FLIGHT_RESERVE_S = 25.0


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def refresh_sweep(event: dict, context: LambdaContext) -> dict:
    remaining_s = context.get_remaining_time_in_millis() / 1000
    report = container().refresh.sweep(budget_s=max(remaining_s - IN_FLIGHT_RESERVE_S, 5.0))
    for name, value in (("RefreshDue", report.due), ("TokensRefreshed", report.refreshed),
                        ("RefreshFailed", report.failed), ("RefreshRescheduled", report.rescheduled),
                        ("RefreshErrors", report.errors), ("RefreshItemsRead", report.items_read)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("token refresh sweep", extra={"report": report.as_dict()})
    return report.as_dict()


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def workspace_reconcile(event: dict, context: LambdaContext) -> dict:
    report = container().workspaces.reconcile()
    for name, value in (("WorkspacesChecked", report.checked), ("WorkspacesMoved", report.moved),
                        ("WorkspaceReconcileErrors", report.errors)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("workspace reconcile", extra={"report": report.as_dict()})
    return report.as_dict()
