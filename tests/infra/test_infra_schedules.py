"""SCHEDULES entries become an EventBridge rule and a function each (the list is empty today)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from cdk_template_helpers import of_type, props, relay_functions, service_name
from infra_build import SKIP_BUNDLING
from functions.manifest import ScheduleSpec
from relay_cloud_infra.stack import RelayCloudStack

HANDLER = "functions.meta.handler.lambda_handler"
SCHEDULES = (ScheduleSpec("sweep", 5, HANDLER), ScheduleSpec("minutely", 1, HANDLER))


@pytest.fixture(scope="module")
def scheduled(web_dir, tmp_path_factory):
    app = cdk.App(context=SKIP_BUNDLING, outdir=str(tmp_path_factory.mktemp("scheduled")))
    stack = RelayCloudStack(
        app, "Scheduled", env=cdk.Environment(account="111111111111", region="us-east-1"),
        schedules=SCHEDULES, web_dir=web_dir,
    )
    pack = AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
    cdk.Validations.of(app).add_plugins(pack)
    return app, pack, Template.from_stack(stack).to_json()["Resources"]


def test_one_rule_and_function_per_schedule(scheduled):
    _, _, resources = scheduled
    functions = {service_name(fn): (lid, fn) for lid, fn in relay_functions(resources).items()}
    rules = list(of_type(resources, "AWS::Events::Rule").values())
    assert len(rules) == len(SCHEDULES)
    expressions = {}
    for rule in rules:
        (target,) = props(rule)["Targets"]
        function_id = target["Arn"]["Fn::GetAtt"][0]
        expressions[service_name(resources[function_id])] = props(rule)["ScheduleExpression"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert expressions == {"sweep": "rate(5 minutes)", "minutely": "rate(1 minute)"}
    for spec in SCHEDULES:
        name, handler = spec.name, spec.handler
        _, fn = functions[name]
        assert props(fn)["Handler"] == handler
        assert props(fn)["Architectures"] == ["arm64"]
        assert props(fn)["Environment"]["Variables"]["RELAY_ENV"] == "production"
    assert len(of_type(resources, "AWS::Lambda::Permission")) >= len(SCHEDULES)


def test_schedule_functions_are_alarmed(scheduled):
    _, _, resources = scheduled
    alarmed = {
        (props(a)["MetricName"], props(a)["Dimensions"][0]["Value"]["Ref"])
        for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if props(a)["Namespace"] == "AWS/Lambda"
    }
    for lid, fn in relay_functions(resources).items():
        assert ("Errors", lid) in alarmed and ("Throttles", lid) in alarmed


def test_schedule_functions_pass_cdk_nag(scheduled):
    app, pack, _ = scheduled
    assert [v.rule_name for v in pack.validate_scope(app).violations] == []


def test_rate_must_be_whole_minutes():
    with pytest.raises(ValueError):
        ScheduleSpec("bad", 0, HANDLER)
    with pytest.raises(ValueError):
        ScheduleSpec("bad", 1.5, HANDLER)
    assert ScheduleSpec("ok", 15, HANDLER).rate_minutes == 15
