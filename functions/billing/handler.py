"""Billing: the public plan catalog (checkout, portal and webhooks arrive with the billing issue)."""

from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.domain.errors import NotFound
from relay_cloud.domain.plans import PLANS, get_plan
from relay_cloud.http.app import build_app, entrypoint

router = Router()


@router.get("/api/billing/plans", summary="The plan catalog", tags=["billing"])
def list_plans():
    return {"plans": [plan.to_public() for plan in PLANS.values()]}


@router.get("/api/billing/plans/<tier>", summary="One plan of the catalog", tags=["billing"])
def read_plan(tier: str):
    plan = get_plan(tier)
    if plan is None:
        raise NotFound("No such plan", code="PLAN_NOT_FOUND", tier=tier[:40])
    return {"plan": plan.to_public()}


app = build_app(router)
lambda_handler = entrypoint(app)
