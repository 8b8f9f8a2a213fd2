"""The plan catalog: the single source of truth for prices, limits and features (SPEC C8).

The pricing page, the billing API, checkout and limit enforcement all read this module.
``None`` as a limit means unlimited; ``None`` as a price means "custom" (talk to sales).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

LIMITS = ("workspaces", "repositories", "concurrent_agents", "compute_hours_per_month", "team_members_per_workspace")
FEATURES = ("coordinators", "custom_domains", "audit_log_export", "sso")


@dataclass(frozen=True)
class Plan:
    tier: str
    name: str
    tagline: str
    monthly_cents: int | None
    yearly_cents: int | None
    limits: dict[str, int | None]
    features: dict[str, bool]

    @property
    def custom_pricing(self) -> bool:
        return self.monthly_cents is None

    def limit(self, resource: str) -> int | None:
        return self.limits[resource]

    def allows(self, feature: str) -> bool:
        return self.features[feature]

    def to_public(self) -> dict:
        data = asdict(self)
        data["price"] = {
            "currency": "usd",
            "monthly_cents": data.pop("monthly_cents"),
            "yearly_cents": data.pop("yearly_cents"),
            "custom": self.custom_pricing,
            "yearly_discount_percent": 20 if self.yearly_cents else 0,
        }
        return data


def _plan(tier, name, tagline, monthly, yearly, limits, features) -> Plan:
    return Plan(tier, name, tagline, monthly, yearly, dict(zip(LIMITS, limits)), dict(zip(FEATURES, features)))


PLANS: dict[str, Plan] = {
    plan.tier: plan
    for plan in (
        _plan("free", "Free", "Try agent teams on one workspace", 0, 0,
              (1, 3, 2, 10, 1), (False, False, False, False)),
        _plan("pro", "Pro", "For developers shipping every day", 2900, 27800,
              (5, 20, 10, 100, 1), (True, False, False, False)),
        _plan("team", "Team", "Shared workspaces for your whole team", 9900, 95000,
              (20, 100, 50, 500, 25), (True, True, False, False)),
        _plan("enterprise", "Enterprise", "Unlimited scale, SSO and audit export", None, None,
              (None, None, None, None, None), (True, True, True, True)),
    )
}

DEFAULT_TIER = "free"
# The cheapest plan that has each feature, for FEATURE_NOT_AVAILABLE answers.
REQUIRED_PLAN = {feature: next(p.tier for p in PLANS.values() if p.allows(feature)) for feature in FEATURES}


def get_plan(tier: str) -> Plan | None:
    return PLANS.get(tier)


class LimitReached(Exception):
    """A plan limit's usage counter refused one more (raised by the usage counter's transaction; services
    turn it into the 402 of ``limit_exceeded``)."""

    def __init__(self, resource: str, limit: int | None):
        super().__init__(f"{resource} limit reached")
        self.resource = resource
        self.limit = limit


def limit_exceeded(plan: Plan, resource: str, used: int, public_url: str):
    """The 402 of SPEC C8: ``{"code": "PLAN_LIMIT_EXCEEDED", "resource", "limit", "used", "plan", "upgrade_url"}``."""
    from relay_cloud.domain.errors import PaymentRequired

    limit = plan.limit(resource)
    label = resource.replace("_", " ")
    return PaymentRequired(
        f"Your {plan.name} plan allows {limit} {label}; upgrade for more", code="PLAN_LIMIT_EXCEEDED",
        resource=resource, limit=limit, used=used, plan=plan.tier, upgrade_url=f"{public_url}/pricing",
    )
