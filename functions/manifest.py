"""The deployment topology: which function serves which API Gateway routes, and what it may touch.

The CDK api construct creates one Lambda function and its HTTP API routes per entry; the local gateway
routes requests with the same entries, so local runs and the deployed API dispatch identically.
Route keys use API Gateway syntax ("ANY /api/auth/{proxy+}"); grants name least-privilege permissions
the CDK function construct knows how to give ("table:read", "table:write", "vault", "github_secret").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    routes: tuple[str, ...]
    grants: tuple[str, ...] = ()
    memory_mb: int = 512
    timeout_s: int = 15
    # Errors in 5 minutes that raise the alarm. A workflow task raises on purpose to make Step Functions
    # retry; its real failures are the state machine's ExecutionsFailed alarm.
    error_alarm_threshold: int = 1

    @property
    def handler(self) -> str:
        return f"functions.{self.name}.handler.lambda_handler"

    @property
    def module(self) -> str:
        return f"functions.{self.name}.handler"

    @property
    def serves_http(self) -> bool:
        return bool(self.routes)




FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("meta", routes=("GET /health", "GET /api/openapi.json"), memory_mb=256),
    FunctionSpec(
        "auth",
        routes=("ANY /api/auth/{proxy+}", "DELETE /api/account"),
        grants=("table:read", "table:write", "vault", "github_secret"),
    ),
    FunctionSpec("billing", routes=("GET /api/billing/plans", "GET /api/billing/plans/{tier}"), memory_mb=256),
    FunctionSpec(
        "providers",
        routes=("ANY /api/providers", "ANY /api/providers/{proxy+}"),
        grants=("table:read", "table:write", "vault", "github_secret", "workflow:device_flow"),
    ),
    FunctionSpec(
        "daemons",
        routes=("ANY /api/daemons", "ANY /api/daemons/{proxy+}"),
        grants=("table:read", "table:write", "vault"),  # vault: credential leases (access tokens only)
    ),
    FunctionSpec(
        "repos",
        routes=("ANY /api/repos", "ANY /api/repos/{proxy+}"),
        grants=("table:read", "table:write", "vault"),  # vault: the user's GitHub token, to call GitHub as them
    ),
    FunctionSpec(
        "workspaces",
        routes=("ANY /api/workspaces", "ANY /api/workspaces/{proxy+}"),
        # fly_secret/railway_secret: start/stop/restart call the provider directly (railway_secret also offers
        # Railway to new workspaces); the workflows: create and delete start them.
        grants=("table:read", "table:write", "fly_secret", "railway_secret", "workflow:provision",
                "workflow:teardown"),
    ),
    # Step Functions tasks of the device-flow and workspace workflows: no API route. fly_secret/railway_secret:
    # the provisioning and teardown steps call the workspace's compute provider.
    FunctionSpec("workflows", routes=(),
                 grants=("table:read", "table:write", "vault", "github_secret", "fly_secret", "railway_secret"),
                 timeout_s=30, error_alarm_threshold=25),
)

HTTP_FUNCTIONS = tuple(spec for spec in FUNCTIONS if spec.serves_http)

# Targets of EventBridge schedules (the local stack's ticker runs the same list): (name, rate in
# minutes, handler).
@dataclass(frozen=True)
class ScheduleSpec:
    """A function run by an EventBridge schedule (the local stack's ticker runs the same list)."""

    name: str
    rate_minutes: int
    handler: str
    grants: tuple[str, ...] = ("table:read", "table:write", "vault")
    memory_mb: int = 512
    timeout_s: int = 60
    routes: tuple[str, ...] = ()
    error_alarm_threshold: int = 1

    def __post_init__(self):
        if not isinstance(self.rate_minutes, int) or self.rate_minutes < 1:
            raise ValueError(f"schedule {self.name}: rate must be a whole number of minutes >= 1")

    @property
    def function_name(self) -> str:
        return f"schedule-{self.name}"

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]


SCHEDULES: tuple[ScheduleSpec, ...] = (
    # SPEC C3: refresh OAuth connections whose refresh is due (a query of the due-time index, no scans).
    # GitHub refreshes need our OAuth client's secret; a long timeout lets a backlog catch up.
    ScheduleSpec("token-refresh", 5, "functions.schedules.handler.refresh_sweep",
                 grants=("table:read", "table:write", "vault", "github_secret"), timeout_s=180),
    # docs/design/workspaces.md: running or moving workspaces follow their machine's state (the sparse
    # reconcile index, no scans), closing running periods into the compute meter.
    ScheduleSpec("workspace-reconcile", 5, "functions.schedules.handler.workspace_reconcile",
                 grants=("table:read", "table:write", "fly_secret", "railway_secret"), timeout_s=120),
)


def function_for(method: str, path: str) -> FunctionSpec | None:
    """The function whose route key matches, as API Gateway would choose (exact before greedy)."""
    best: tuple[int, FunctionSpec] | None = None
    for spec in FUNCTIONS:
        for key in spec.routes:
            route_method, template = key.split(" ", 1)
            if route_method not in ("ANY", method):
                continue
            score = _match(template, path)
            if score is not None and (best is None or score > best[0]):
                best = (score, spec)
    return best[1] if best else None


def _match(template: str, path: str) -> int | None:
    """Score a match: more literal segments win, like API Gateway's most-specific-route rule."""
    t_parts, p_parts = template.strip("/").split("/"), path.strip("/").split("/")
    score = 0
    for i, part in enumerate(t_parts):
        if part.endswith("+}"):
            return score if len(p_parts) > i and all(p_parts[i:]) else None
        if i >= len(p_parts):
            return None
        if part.startswith("{"):
            if not p_parts[i]:
                return None
        elif part != p_parts[i]:
            return None
        else:
            score += 100
    return score + 1 if len(p_parts) == len(t_parts) else None
