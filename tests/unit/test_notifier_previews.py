"""The in-process notifier's preview routing: what a stream that opted into `event_deltas[]` is handed."""

from __future__ import annotations

import threading

from managed_agents.adapters.local.notifier import LocalNotifier
from managed_agents.domain.events import JsonObject
from tests.own_loop import run_on_own_loop


def _start(type_: str, id_: str) -> JsonObject:
    return {"type": "event_start", "event": {"type": type_, "id": id_}}


def _delta(id_: str, text: str, index: int = 0) -> JsonObject:
    return {
        "type": "event_delta",
        "event_id": id_,
        "delta": {"type": "content_delta", "index": index, "content": {"type": "text", "text": text}},
    }


def test_previews_follow_the_opt_in_and_one_open_message_at_a_time() -> None:
    async def run() -> None:
        n = LocalNotifier()
        messages = n.subscribe("s1", previews=frozenset({"agent.message"}))
        nothing = n.subscribe("s1")
        other = n.subscribe("s2", previews=frozenset({"agent.message", "agent.thinking"}))
        assert n.wants_previews("s1") == {"agent.message"}
        assert n.wants_previews("s3") == frozenset()
        # A delta before any start (the stream opened mid-message) is dropped; a thinking start is not wanted
        n.publish_preview("s1", _delta("m0", "late"))
        n.publish_preview("s1", _start("agent.thinking", "t1"))
        n.publish_preview("s1", _start("agent.message", "m1"))
        n.publish_preview("s1", _delta("m1", "a"))
        # A second message while the first is open is not previewed, nor are its deltas
        n.publish_preview("s1", _start("agent.message", "m2"))
        n.publish_preview("s1", _delta("m2", "b"))
        assert messages.take_previews() == [_start("agent.message", "m1"), _delta("m1", "a")]
        assert messages.take_previews() == []
        assert nothing.take_previews() == [] and other.take_previews() == []
        # Once the first message's final event is delivered, its deltas are stale and a new message may start
        messages.forget_preview("m1")
        n.publish_preview("s1", _delta("m1", "stale"))
        n.publish_preview("s1", _start("agent.message", "m3"))
        assert messages.take_previews() == [_start("agent.message", "m3")]
        # A request that ended without a final event (span.model_request_end) closes its previews too
        messages.forget_preview(None)
        n.publish_preview("s1", _delta("m3", "x"))
        n.publish_preview("s1", _start("agent.message", "m4"))
        assert messages.take_previews() == [_start("agent.message", "m4")]
        messages.close()
        assert n.wants_previews("s1") == frozenset()

    run_on_own_loop(run())


def test_an_append_published_on_the_streams_loop_wakes_them_at_once_and_one_from_a_thread_through_the_loop() -> None:
    async def run() -> None:
        n = LocalNotifier()
        one, two = n.subscribe("s1"), n.subscribe("s1")
        # An append published on the loop the streams wait on (a send made on the loop): set before it returns,
        # with no call through the loop's self-pipe
        n.publish("s1", 1)
        assert one.event.is_set() and two.event.is_set()
        one.event.clear()
        two.event.clear()
        # One published from another thread (a harness step): set by the loop, once it runs
        t = threading.Thread(target=n.publish, args=("s1", 2))
        t.start()
        t.join()
        assert not one.event.is_set()
        await one.wait(5)
        await two.wait(5)
        assert not one.event.is_set() and not two.event.is_set()  # (both woken, and cleared by their wait)
        # A preview offered on the loop (the model request runs there) too
        previews = n.subscribe("s2", previews=frozenset({"agent.message"}))
        n.publish_preview("s2", _start("agent.message", "m1"))
        assert previews.event.is_set()

    run_on_own_loop(run())
