"""Cron schedules of deployments (api-reference §2.8; SDK `BetaManagedAgentsScheduleParams`).

An expression is 5-field POSIX cron: minute hour day-of-month month day-of-week, day-of-week 0-7 (0 and 7 are
Sunday). Each field is a comma list of `*`, a number or a range, each with an optional `/step`; month and day names
(`JAN`, `MON-FRI`) are accepted as most crons do. Extended syntax is refused as the SDK documents it: seconds or year
fields, `L W # ?`, predefined shortcuts (`@daily`) and anything else croniter would take beyond POSIX (`H`). The
timezone is an IANA name; occurrences are computed in it (croniter, so a daily 09:00 stays 09:00 across DST) and
returned in UTC.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from managed_agents.domain.errors import InvalidRequest

_NAMES = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT"
_VALUE = rf"(?:\d{{1,2}}|{_NAMES})"
_TERM = re.compile(rf"^(?:\*|{_VALUE}(?:-{_VALUE})?)(?:/\d{{1,2}})?$", re.IGNORECASE)
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
MAX_EXPRESSION = 256


def check_expression(expression: str, *, field: str = "schedule.expression") -> str:
    """The expression, or InvalidRequest saying which field of it is not 5-field POSIX cron."""
    parts = expression.split()
    if len(parts) != len(FIELDS) or len(expression) > MAX_EXPRESSION:
        raise InvalidRequest(
            f"{field}: {expression[:100]!r} is not a 5-field cron expression (minute hour day-of-month month "
            "day-of-week); seconds or year fields and shortcuts such as @daily are not supported"
        )
    for name, part in zip(FIELDS, parts, strict=True):
        for term in part.split(","):
            if not _TERM.match(term):
                raise InvalidRequest(
                    f"{field}: the {name} field {part!r} is not POSIX cron (numbers, names, ranges, lists, * and "
                    "/step; L, W, #, ? and H are not supported)"
                )
    if not croniter.is_valid(expression):
        raise InvalidRequest(f"{field}: {expression[:100]!r} has a value out of range")
    try:
        next(occurrences(expression, "UTC", datetime.now(UTC)))
    except (StopIteration, ValueError, KeyError) as exc:  # e.g. `0 0 31 2 *`: never matches
        raise InvalidRequest(f"{field}: {expression[:100]!r} never matches a date") from exc
    return expression


def check_timezone(timezone: str, *, field: str = "schedule.timezone") -> str:
    try:
        if not timezone or timezone != timezone.strip() or timezone.startswith(("/", ".")) or ".." in timezone:
            raise ValueError
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(f"{field}: {timezone[:100]!r} is not an IANA timezone (e.g. 'UTC', 'Asia/Tokyo')") from exc
    return timezone


def occurrences(expression: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """The UTC instants the expression matches in `timezone`, strictly after `after`, in order."""
    it = croniter(expression, after.astimezone(ZoneInfo(timezone)))
    while True:
        yield it.get_next(datetime).astimezone(UTC)


def next_occurrence(expression: str, timezone: str, after: datetime) -> datetime:
    return next(occurrences(expression, timezone, after))


def upcoming(expression: str, timezone: str, after: datetime, count: int = 5) -> list[datetime]:
    it = occurrences(expression, timezone, after)
    return [next(it) for _ in range(count)]


def jitter(schedule_id: str, expression: str, timezone: str, max_seconds: float, now: datetime) -> timedelta:
    """The per-schedule offset of each fire after its cron instant (api-reference §2.8: "each fire is offset by a
    small per-schedule jitter"): a stable fraction of `max_seconds` from the schedule's id, and never more than a
    tenth of the gap between two occurrences, so a per-minute schedule still fires once a minute."""
    if max_seconds <= 0:
        return timedelta(0)
    first, second = upcoming(expression, timezone, now, 2)
    cap = min(max_seconds, (second - first).total_seconds() / 10)
    fraction = int.from_bytes(hashlib.sha256(schedule_id.encode()).digest()[:4], "big") / 2**32
    return timedelta(seconds=round(cap * fraction, 3))
