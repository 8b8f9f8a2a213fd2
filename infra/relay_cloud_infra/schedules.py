"""EventBridge schedules from functions.manifest.SCHEDULES: one rule and one function per entry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from .function import RelayFunction

# SCHEDULES entries carry no grants; the known schedule targets (credential refresh sweep, presence,
# usage rollup) read and write the table and unwrap credentials with the vault key.
DEFAULT_SCHEDULE_GRANTS = ("table:read", "table:write", "vault")


@dataclass(frozen=True)
class ScheduleSpec:
    """FunctionSpec-like description of a scheduled function (no routes, explicit handler)."""

    name: str
    rate_minutes: int
    handler: str
    grants: tuple[str, ...] = DEFAULT_SCHEDULE_GRANTS
    memory_mb: int = 512
    timeout_s: int = 60
    routes: tuple[str, ...] = ()

    @property
    def function_name(self) -> str:
        return f"schedule-{self.name}"


def schedule_specs(entries: Iterable[tuple[str, int, str]]) -> list[ScheduleSpec]:
    specs = []
    for name, rate, handler in entries:
        if not isinstance(rate, int) or rate < 1:
            raise ValueError(f"schedule {name}: rate must be a whole number of minutes >= 1, not {rate!r}")
        specs.append(ScheduleSpec(name=name, rate_minutes=rate, handler=handler))
    return specs


class Schedules(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        entries: Iterable[tuple[str, int, str]],
        make_function: Callable[[Construct, str, ScheduleSpec], RelayFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, RelayFunction] = {}
        self.rules: dict[str, events.Rule] = {}
        for spec in schedule_specs(entries):
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
