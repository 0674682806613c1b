"""Deployment schedules on AWS: one EventBridge Scheduler schedule per scheduled deployment (ports.DeploymentSchedules).

Each schedule, named after its deployment in the platform's schedule group, invokes the trigger function with
`{"schedule_arn": <aws.scheduler.schedule-arn>, "scheduled_time": <aws.scheduler.scheduled-time>, "detail":
{"type": "run_deployment", "deployment_id"}}` (services/triggers.py): the tick's `scheduled_at` is Scheduler's
scheduled time, so a retried delivery is the same run. Its state follows the deployment: ENABLED when active,
DISABLED when paused, deleted when archived or made manual-only. Flexible time window OFF.

POSIX cron and Scheduler's `cron()` differ: Scheduler has six fields (a year), wants `?` in one of day-of-month and
day-of-week, and counts days of the week 1-7 from Sunday. The day-of-week field is expanded to names (`MON,WED`),
so no number is shifted by hand. POSIX fires when either day field matches if both are restricted; Scheduler
cannot say that in one expression, so such a deployment gets two schedules (`<id>` on days of the month and
`<id>-dow` on days of the week); a tick both match is delivered twice with one scheduled time, which is one run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
DOW_SUFFIX = "-dow"


def _days_of_week(field: str) -> str:
    """The POSIX day-of-week field as Scheduler day names, every day listed."""
    expanded = croniter(f"0 0 * * {field}", datetime(2000, 1, 1, tzinfo=UTC)).expanded[4]
    days = sorted({0 if d == 7 else int(d) for d in expanded if d != "*"})
    return ",".join(DAY_NAMES[d] for d in days)


def _steps(field: str, start: int) -> str:
    """Scheduler writes a step from the field's start as `0/15`, not `*/15`."""
    return ",".join(f"{start}/{t[2:]}" if t.startswith("*/") else t for t in field.split(","))


def aws_cron(expression: str) -> list[str]:
    """The Scheduler expressions that together fire when the 5-field POSIX `expression` does."""
    minute, hour, dom, month, dow = expression.split()
    minute, hour, dom, month = _steps(minute, 0), _steps(hour, 0), _steps(dom, 1), _steps(month, 1)
    if dow == "*":
        return [f"cron({minute} {hour} {dom} {month} ? *)"]
    names = _days_of_week(dow)
    if dom == "*":
        return [f"cron({minute} {hour} ? {month} {names} *)"]
    return [f"cron({minute} {hour} {dom} {month} ? *)", f"cron({minute} {hour} ? {month} {names} *)"]


class SchedulerDeploymentSchedules:
    def __init__(
        self,
        *,
        client: Any = None,
        group: str,
        target_arn: str | None = None,
        role_arn: str | None = None,
        dead_letter_arn: str | None = None,
    ) -> None:
        """`target_arn`/`role_arn` (the trigger function, the schedules' role) are needed to create schedules; a
        function that only pauses or resumes them (the trigger function's auto-pause) keeps their own target."""
        self._client = client
        self.group = group
        self.target_arn = target_arn
        self.role_arn = role_arn
        self.dead_letter_arn = dead_letter_arn

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("scheduler")
        return self._client

    def put(self, deployment_id: str, schedule: dict[str, Any] | None, enabled: bool) -> None:
        """Make the deployment's schedules match: none when `schedule` is None."""
        expressions = aws_cron(str(schedule["expression"])) if schedule else []
        names = [deployment_id, deployment_id + DOW_SUFFIX]
        for i, name in enumerate(names):
            if i < len(expressions) and schedule is not None:
                self._upsert(name, deployment_id, expressions[i], str(schedule["timezone"]), enabled)
            else:
                self._delete(name)

    def _existing(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.client.get_schedule(Name=name, GroupName=self.group)
            return found
        except self.client.exceptions.ResourceNotFoundException:
            return None

    def _target(self, deployment_id: str) -> dict[str, Any]:
        if not self.target_arn or not self.role_arn:
            raise RuntimeError("deployment schedules: no trigger function or schedule role configured to create one")
        target: dict[str, Any] = {
            "Arn": self.target_arn,
            "RoleArn": self.role_arn,
            "Input": json.dumps(
                {
                    "schedule_arn": "<aws.scheduler.schedule-arn>",
                    "scheduled_time": "<aws.scheduler.scheduled-time>",
                    "detail": {"type": "run_deployment", "deployment_id": deployment_id},
                }
            ),
            "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10},
        }
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        return target

    def _upsert(self, name: str, deployment_id: str, expression: str, timezone: str, enabled: bool) -> None:
        existing = self._existing(name)
        fields: dict[str, Any] = {
            "Name": name,
            "GroupName": self.group,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if enabled else "DISABLED",
            "Description": f"deployment {deployment_id}",
        }
        if existing is None:
            self.client.create_schedule(Target=self._target(deployment_id), **fields)
        else:
            self.client.update_schedule(Target=existing["Target"], **fields)

    def _delete(self, name: str) -> None:
        if self._existing(name) is None:  # (most deployments never had a second schedule: read, don't delete)
            return
        try:
            self.client.delete_schedule(Name=name, GroupName=self.group)
        except self.client.exceptions.ResourceNotFoundException:
            pass
