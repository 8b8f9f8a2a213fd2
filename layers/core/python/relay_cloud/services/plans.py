"""The caller's plan, as every plan-limited service reads it (SPEC C8: one plan catalog)."""

from __future__ import annotations

from relay_cloud.domain.errors import Unauthenticated
from relay_cloud.domain.plans import DEFAULT_TIER, PLANS, Plan, get_plan


def plan_of(users, user_id: str) -> Plan:
    """The user's plan (the default tier for one we do not know); a deleted account ends the session."""
    user = users.get(user_id)
    if user is None:
        raise Unauthenticated("Your account no longer exists", code="SESSION_EXPIRED")
    return get_plan(user.plan) or PLANS[DEFAULT_TIER]
