"""EventBridge schedules from functions.manifest.SCHEDULES: one rule and one function per entry."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from functions.manifest import ScheduleSpec

from .function import RelayFunction

class Schedules(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        entries: Iterable[ScheduleSpec],
        make_function: Callable[[Construct, str, ScheduleSpec], RelayFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, RelayFunction] = {}
        self.rules: dict[str, events.Rule] = {}
        for spec in entries:
            function = make_function(self, f"{spec.name}-function", spec)
            rule = events.Rule(
                self,
                f"{spec.name}-rule",
                description=f"Run {spec.handler} every {spec.rate_minutes} minute(s)",
                schedule=events.Schedule.rate(Duration.minutes(spec.rate_minutes)),
            )
            rule.add_target(
                targets.LambdaFunction(
                    function.function,
                    retry_attempts=2,
                    max_event_age=Duration.minutes(max(spec.rate_minutes, 1)),
                )
            )
            self.functions[spec.name] = function
            self.rules[spec.name] = rule
