"""The AWS event notifier: stream readers poll the store, because appends happen in other processes.

On AWS the harness runs in the ModelTurn Lambda and the API in another Lambda, so no in-process signal reaches an
open event stream. A subscription's `wait` returns after at most `poll_seconds` (the stream then re-reads the log:
one Query) or at once when this process appended to the session itself (API-side user events).
"""

from __future__ import annotations

from managed_agents.adapters.local.notifier import LocalNotifier, _LocalSubscription


class _PollingSubscription(_LocalSubscription):
    def __init__(self, owner: PollingNotifier, session_id: str, previews: frozenset[str] = frozenset()) -> None:
        super().__init__(owner, session_id, previews)
        self.poll_seconds = owner.poll_seconds

    async def wait(self, seconds: float) -> None:
        await super().wait(min(seconds, self.poll_seconds))


class PollingNotifier(LocalNotifier):
    sees_every_append = False  # the harness appends in other Lambdas: a stream reads the store on every poll

    def __init__(self, poll_seconds: float = 0.5) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        super().__init__()
        self.poll_seconds = poll_seconds

    def subscribe(self, session_id: str, previews: frozenset[str] = frozenset()) -> _PollingSubscription:
        sub = _PollingSubscription(self, session_id, previews)
        self._add(sub)
        return sub
