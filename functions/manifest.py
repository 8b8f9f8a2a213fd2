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

    @property
    def handler(self) -> str:
        return f"functions.{self.name}.handler.lambda_handler"

    @property
    def module(self) -> str:
        return f"functions.{self.name}.handler"


FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("meta", routes=("GET /health", "GET /api/openapi.json"), memory_mb=256),
    FunctionSpec(
        "auth",
        routes=("ANY /api/auth/{proxy+}", "DELETE /api/account"),
        grants=("table:read", "table:write", "vault", "github_secret"),
    ),
    FunctionSpec("billing", routes=("GET /api/billing/plans", "GET /api/billing/plans/{tier}"), memory_mb=256),
)

# Targets of EventBridge schedules (the local stack's ticker runs the same list): (name, rate in
# minutes, handler). Empty until the refresh sweep arrives with provider connections.
SCHEDULES: tuple[tuple[str, int, str], ...] = ()


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
