"""Harness steps of one process run Python a few at a time (StepSlots): a step holds a slot while it runs and gives
it back while it waits on the model; a step that waits too long for a slot runs anyway."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from managed_agents.adapters.local.in_process_orchestrator import StepSlots
from managed_agents.domain.events import JsonObject
from managed_agents.ports import ModelResponse, ModelUsage
from managed_agents.settings import ServerSettings
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams, UserMessageParams
from managed_agents.wiring import bootstrap_admin_key, build_local_runtime


def _run(slots: StepSlots, inside: list[int], most: list[int], lock: threading.Lock, hold: float) -> None:
    with slots.held():
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(hold)
        with lock:
            inside[0] -= 1


def test_at_most_the_slots_run_at_once() -> None:
    # Given two slots and six steps that each run for 50 ms
    slots = StepSlots(2, wait_seconds=10)
    inside, most, lock = [0], [0], threading.Lock()
    threads = [threading.Thread(target=_run, args=(slots, inside, most, lock, 0.05)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Then never more than two ran at once, and all ran
    assert most[0] == 2
    assert inside[0] == 0


def test_a_step_waiting_outside_the_process_lets_another_run() -> None:
    # Given one slot, held by a step that then waits (on the model, say) until told
    slots = StepSlots(1, wait_seconds=10)
    waiting, done = threading.Event(), threading.Event()
    holding_while_waiting: list[bool] = []

    def first() -> None:
        with slots.held():
            assert slots.holding()
            with slots.released():
                holding_while_waiting.append(slots.holding())
                waiting.set()
                done.wait(10)
            holding_while_waiting.append(slots.holding())

    t = threading.Thread(target=first)
    t.start()
    assert waiting.wait(10)
    # When another step starts meanwhile, Then it gets the slot at once
    entered = threading.Event()

    def second() -> None:
        with slots.held():
            entered.set()

    u = threading.Thread(target=second)
    u.start()
    assert entered.wait(5)
    done.set()
    t.join(10)
    u.join(10)
    # And the first gave its slot back only for its wait, and took it again after
    assert holding_while_waiting == [False, True]


def test_a_step_that_waits_too_long_for_a_slot_runs_anyway_and_gives_nothing_back() -> None:
    # Given one slot held by a step that does not let go (a blocking call not marked as a wait)
    slots = StepSlots(1, wait_seconds=0.05)
    release, holder_entered = threading.Event(), threading.Event()

    def holder() -> None:
        with slots.held():
            holder_entered.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert holder_entered.wait(5)
    # When another step starts, Then it runs without a slot after the bound
    with slots.held():
        assert not slots.holding()
        with slots.released():  # (nothing to give back)
            assert not slots.holding()
    # And when the holder is done, the slot is free again (the slotless step released nothing extra)
    release.set()
    t.join(10)
    with slots.held():
        assert slots.holding()
    assert slots._slots.acquire(timeout=0)  # exactly one slot, free
    slots._slots.release()


class _SlotCheckingModel:
    """Answers at once, recording whether the calling step held its slot during the request."""

    def __init__(self) -> None:
        self.slots: StepSlots | None = None
        self.held_during_request: list[bool] = []

    def stream_message(self, request: JsonObject, *, cancel: object = None, on_event: object = None) -> ModelResponse:
        assert self.slots is not None
        self.held_during_request.append(self.slots.holding())
        return ModelResponse([{"type": "text", "text": "ok"}], "end_turn", ModelUsage(), "claude-sonnet-4-6")


def test_the_embedded_runtimes_steps_give_their_slot_back_during_the_model_request(tmp_path: Path) -> None:
    # Given the embedded runtime whose model records whether the step held its slot
    model = _SlotCheckingModel()
    rt = build_local_runtime(ServerSettings(data_dir=str(tmp_path)), model=model)
    try:
        assert rt.orchestrator is not None
        model.slots = rt.orchestrator.slots
        p = rt.keys.authenticate(bootstrap_admin_key(rt))
        ws = p.workspace_id
        agent = rt.agents.create(ws, AgentCreateParams.model_validate({"name": "a", "model": "claude-sonnet-4-6"}))
        env = rt.environments.create(ws, EnvironmentCreateParams.model_validate({"name": "e"}))
        sid = rt.sessions.create(
            ws, SessionCreateParams.model_validate({"agent": agent["id"], "environment_id": env["id"]})
        )["id"]
        # When a message runs a turn
        msg = {"type": "user.message", "content": [{"type": "text", "text": "hi"}]}
        rt.sessions.send(p, sid, [UserMessageParams.model_validate(msg)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            model.held_during_request and rt.resources.get("session", ws, sid).doc["status"] == "idle"  # type: ignore[union-attr]
        ):
            time.sleep(0.02)
        # Then the request ran without the slot, and the step's slot is back
        assert model.held_during_request == [False]
        assert rt.orchestrator.slots._slots.acquire(timeout=1)
        rt.orchestrator.slots._slots.release()
    finally:
        rt.close()
