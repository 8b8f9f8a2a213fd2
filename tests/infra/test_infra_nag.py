"""cdk-nag AwsSolutions: no unacknowledged finding, and every acknowledgement explains itself."""

from __future__ import annotations

from aws_cdk import Validations
from aws_cdk.assertions import Annotations, Match


def test_no_unacknowledged_aws_solutions_findings(built, template):
    app, stack, pack = built
    report = pack.validate_scope(app)
    findings = [
        f"{v.severity} {v.rule_name}: {[r.locations for r in v.violating_resources]} {v.description[:80]}"
        for v in report.violations
    ]
    assert findings == []
    annotations = Annotations.from_stack(stack)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    assert annotations.find_error("*", pattern) == []
    assert annotations.find_warning("*", pattern) == []


def test_every_acknowledgement_has_a_specific_reason(resources):
    acknowledged = [
        (lid, rule)
        for lid, res in resources.items()
        for rule in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert acknowledged, "the audit trail is written into the template"
    for lid, rule in acknowledged:
        assert rule["id"].startswith("AwsSolutions-"), (lid, rule)
        assert len(rule.get("reason", "").strip()) >= 20, (lid, rule)


def test_no_stack_wide_acknowledgements(stack):
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    assert [entry for entry in stack.node.metadata if entry.type == key] == []
