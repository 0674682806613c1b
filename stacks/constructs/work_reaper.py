"""WorkReaper: an EventBridge schedule rule that invokes the work reaper Lambda (functions/reaper) every minute.

The reaper stops work items whose lease ran out (a sandbox that died or stopped heartbeating) and tells their
sessions, as the embedded runtime's reaper thread does. Leases last `MANAGED_AGENTS_WORK_LEASE_TTL_SECONDS` (60 s by
default), so a lost sandbox is noticed within about two minutes. A missed or failed run is not retried: the next one
comes a minute later and finds the same items. The rule is the function's only invoker (a resource-based permission
on the `live` alias, scoped to the rule's ARN); the function's role has what reaping needs (stack docstring).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from stacks.constructs.python_function import PythonFunction

REAP_EVERY = Duration.minutes(1)


class WorkReaper(Construct):
    def __init__(self, scope: Construct, id_: str, *, function: PythonFunction) -> None:
        super().__init__(scope, id_)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Every minute: stop sandbox work whose lease ran out (functions/reaper)",
            schedule=events.Schedule.rate(REAP_EVERY),
            targets=[targets.LambdaFunction(function.alias, retry_attempts=0, max_event_age=Duration.minutes(1))],
        )
