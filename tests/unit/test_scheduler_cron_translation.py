"""POSIX cron to EventBridge Scheduler `cron()` (adapters/aws/scheduler_deployment_schedules.py): six fields, `?` in
one day field, days of the week as names (Scheduler counts 1-7 from Sunday, POSIX 0-7), steps from the start."""

from __future__ import annotations

import pytest

from managed_agents.adapters.aws.scheduler_deployment_schedules import aws_cron


@pytest.mark.parametrize(
    ("posix", "scheduler"),
    [
        ("0 9 * * 1-5", ["cron(0 9 ? * MON,TUE,WED,THU,FRI *)"]),
        ("30 2 1 * *", ["cron(30 2 1 * ? *)"]),
        ("*/15 * * * *", ["cron(0/15 * * * ? *)"]),
        ("0 */6 */2 * *", ["cron(0 0/6 1/2 * ? *)"]),
        ("0 0 * * 0", ["cron(0 0 ? * SUN *)"]),
        ("0 0 * * 7", ["cron(0 0 ? * SUN *)"]),
        ("0 0 * * 5-7", ["cron(0 0 ? * SUN,FRI,SAT *)"]),
        ("0 0 * JAN MON-FRI", ["cron(0 0 ? JAN MON,TUE,WED,THU,FRI *)"]),
        # POSIX ORs two restricted day fields; Scheduler cannot: two schedules
        ("0 0 1 * 1", ["cron(0 0 1 * ? *)", "cron(0 0 ? * MON *)"]),
    ],
)
def test_posix_cron_becomes_scheduler_cron(posix: str, scheduler: list[str]) -> None:
    assert aws_cron(posix) == scheduler
