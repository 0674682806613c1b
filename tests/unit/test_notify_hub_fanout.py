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
