"""Folded session states kept between `advance` calls, so a step reads only the events appended since the last one.

The log is append-only with gapless sequences (EventStore), so a state folded up to its `last_seq`, plus the fold of
the events after it, is the fold of the whole log: the state `advance` would build from event 1, for the cost of the
new events only. Without it every step re-read and re-folded the session's whole history (a 40-turn session spent
more time folding than in everything else `advance` does; bench/concurrent_sessions.py --profile cprofile).

A state is taken out of the cache while a step uses it, so two steps of one session never share one, and put back
only when the step ended normally and folded every event it appended in sequence (see `_Turn.append`). A stale state
(another process appended meanwhile, as on AWS) is still a fold of a prefix: taking it reads the rest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from managed_agents.domain.session_state import SessionState, fold
from managed_agents.ports import EventStore, iter_all


class StateCache:
    def __init__(self, max_sessions: int = 1024) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._states: OrderedDict[str, SessionState] = OrderedDict()

    def take(self, events: EventStore, session_id: str) -> SessionState:
        """The session's state, folded up to the end of its log (the caller owns it until `put`)."""
        with self._lock:
            state = self._states.pop(session_id, None) or SessionState()
        return fold(iter_all(events, session_id, after_seq=state.last_seq), state)

    def put(self, session_id: str, state: SessionState) -> None:
        with self._lock:
            self._states[session_id] = state
            self._states.move_to_end(session_id)
            while len(self._states) > self.max_sessions:
                self._states.popitem(last=False)

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._states.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
