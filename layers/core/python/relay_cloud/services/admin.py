"""Operator actions run from ``relay-cloud admin`` (never through the HTTP API).

``set_plan``: until billing exists (SPEC C9), an operator sets a user's plan by GitHub login. The tier
must be in the plan catalog; the change is conditional on the plan the operator's command read (a
concurrent change is reported, never overwritten) and written in one transaction with its audit item
(action ``plan.set``, actor ``operator:<os user>``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.domain.errors import NotFound, ValidationFailed
from relay_cloud.domain.plans import PLANS, get_plan

# GitHub logins: letters, digits and hyphens, not starting with a hyphen, at most 39 characters (a few
# legacy accounts have double or trailing hyphens, so those are allowed).
GITHUB_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")
OPERATOR_ACTOR = re.compile(r"^operator:[^\s]{1,64}$")
PLAN_SET = "plan.set"


@dataclass(frozen=True)
class PlanChange:
    user_id: str
    github_login: str
    from_plan: str
    to_plan: str

    @property
    def changed(self) -> bool:
        return self.from_plan != self.to_plan


@dataclass
class PlanAdmin:
    users: object
    clock: Callable[[], float] = time.time

    def set_plan(self, github_login: str, tier: str, *, actor: str, reason: str | None = None) -> PlanChange:
        tier = (tier or "").strip().lower()
        if get_plan(tier) is None:
            raise ValidationFailed(f"Unknown plan {tier!r}; plans: {', '.join(PLANS)}", code="UNKNOWN_PLAN",
                                   plans=list(PLANS))
        login = (github_login or "").strip().removeprefix("@")
        if not GITHUB_LOGIN.match(login):
            raise ValidationFailed(f"{github_login!r} is not a GitHub login", code="INVALID_LOGIN")
        if not OPERATOR_ACTOR.match(actor):
            raise ValueError("actor must be operator:<name>")
        user = self.users.find_by_github_login(login)
        if user is None:
            raise NotFound(f"No user has signed in with the GitHub login {login!r} (users appear after their "
                           "first sign-in; after a rename, at their next one)", code="USER_NOT_FOUND")
        change = PlanChange(user.user_id, user.github_login, user.plan, tier)
        if change.changed:  # setting the plan a user already has writes nothing and audits nothing
            self.users.change_plan(user.user_id, from_plan=user.plan, to_plan=tier, actor=actor,
                                   reason=reason, now=int(self.clock()))
        return change
