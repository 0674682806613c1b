"""The notify hub (adapters/local/workers.py): an append in one worker wakes another worker's streams of that session,
touching no stream of any other session; sandbox operations go to the owner only."""

from __future__ import annotations

import asyncio
import threading

from managed_agents.adapters.local.notifier import _LocalSubscription
from managed_agents.adapters.local.workers import OWNER, Hub, HubLink, HubNotifier
from tests.e2e.conftest import wait_until
from tests.own_loop import run_on_own_loop


def _linked(hub: Hub, count: int) -> list[HubLink]:
    links = [HubLink(hub.attach(i)) for i in range(count)]
    for link in links:
        link.start()
    return links


def test_a_publish_wakes_the_other_workers_streams_of_that_session_only(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    woken: list[str] = []
    original = _LocalSubscription.notify

    def counting(self: _LocalSubscription, deleted: bool = False) -> None:
        woken.append(self.session_id)
        original(self, deleted)

    monkeypatch.setattr(_LocalSubscription, "notify", counting)
    hub = Hub()
    hub.start()
    try:
        first, second = (HubNotifier(link) for link in _linked(hub, 2))

        async def scenario() -> None:
            # Given worker 2 has one stream on session X and a thousand on other sessions
            target = second.subscribe("sesn_x")
            others = [second.subscribe(f"sesn_{i}") for i in range(1000)]
            # When worker 1 publishes an append to X
            first.publish("sesn_x", 7)
            # Then worker 2's stream of X wakes, and no other stream was touched
            await asyncio.wait_for(target.event.wait(), 10)
            assert woken == ["sesn_x"]
            for sub in [target, *others]:
                sub.close()

        run_on_own_loop(scenario(), timeout=30)
    finally:
        hub.close()


def test_sandbox_operations_reach_the_owner_only() -> None:
    hub = Hub()
    hub.start()
    try:
        links = _linked(hub, 3)
        got: dict[int, list[str]] = {i: [] for i in range(3)}
        lock = threading.Lock()
        for i, link in enumerate(links):
            link.handlers["s"] = lambda rest, i=i: (lock.acquire(), got[i].append(rest), lock.release())
        links[2].send('s {"op":"dispose","session_id":"sesn_a"}')
        wait_until(lambda: got[OWNER], timeout=10)
        links[1].send("r 1")  # a later line from another worker: by the time the owner has it, all earlier are in
        wait_until(lambda: 1 in hub.ready, timeout=10)
        assert got == {0: ['{"op":"dispose","session_id":"sesn_a"}'], 1: [], 2: []}
    finally:
        hub.close()


def test_previews_reach_another_workers_stream_only_while_it_wants_them() -> None:
    hub = Hub()
    hub.start()
    try:
        links = _linked(hub, 2)
        running, streaming = HubNotifier(links[0], 0), HubNotifier(links[1], 1)
        start = {"type": "event_start", "event": {"type": "agent.message", "id": "sevt_1"}}
        delta = {"type": "event_delta", "event_id": "sevt_1", "delta": {"type": "content_delta", "index": 0}}

        async def scenario() -> None:
            # Given worker 1 has a stream of X wanting message previews (and one of Y wanting none)
            sub = streaming.subscribe("sesn_x", previews=frozenset({"agent.message"}))
            streaming.subscribe("sesn_y")
            # Then worker 0, which runs X's model request, knows it: its turn makes previews
            await asyncio.to_thread(wait_until, lambda: running.wants_previews("sesn_x") == {"agent.message"}, 10)
            assert running.wants_previews("sesn_y") == frozenset()
            # When worker 0 publishes previews of X, worker 1's stream gets them, in order
            running.publish_preview("sesn_x", start)
            running.publish_preview("sesn_x", delta)
            taken: list[object] = []
            while len(taken) < 2:
                await asyncio.wait_for(sub.event.wait(), 10)
                sub.event.clear()
                taken += sub.take_previews()
            assert taken == [start, delta]
            # When that stream closes, worker 0 no longer makes previews of X for it
            sub.close()
            await asyncio.to_thread(wait_until, lambda: running.wants_previews("sesn_x") == frozenset(), 10)

        run_on_own_loop(scenario(), timeout=30)
        # And a worker heard to (re)start wants nothing until it says so (its streams died with it)
        streaming._say_wants = lambda session_id: None  # type: ignore[method-assign]
        running._remote_wants("1 sesn_z agent.message")
        assert running.wants_previews("sesn_z") == {"agent.message"}
        links[0].handlers["r"]("1")
        assert running.wants_previews("sesn_z") == frozenset()
    finally:
        hub.close()
