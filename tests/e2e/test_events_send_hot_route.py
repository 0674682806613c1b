"""The event send answered outside the framework (api/hot_routes.py) answers as the framework's route does.

Two apps on one runtime: the server's own (with HotRoutes) and the same app without it, i.e. the route in
api/routes/sessions.py through FastAPI. Each request goes to both; status, error envelope and headers must agree,
and the good send must parse under the official SDK's strict response validation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from managed_agents.api.app import create_app
from managed_agents.api.hot_routes import HotRoutes
from managed_agents.settings import ServerSettings
from managed_agents.testing.loopback import UvicornThread, free_port
from tests.e2e.conftest import Server, embedded_only

pytestmark = embedded_only("compares two apps on the embedded runtime")

BETA = "managed-agents-2026-04-01"
CAP = 64 * 1024


@pytest.fixture
def server_settings(server_settings: ServerSettings) -> ServerSettings:
    return server_settings.model_copy(update={"max_request_body_bytes": CAP})


class _Apps:
    def __init__(self, lean: str, plain: str, key: str, passed_on: list[str]) -> None:
        self.lean, self.plain, self.key, self.passed_on = lean, plain, key, passed_on

    def both(self, path: str, body: bytes, **headers: str) -> tuple[httpx2.Response, httpx2.Response]:
        sent = {"authorization": f"Bearer {self.key}", "anthropic-beta": BETA, "content-type": "application/json"}
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        sent = {k: v for k, v in sent.items() if v}
        return tuple(  # type: ignore[return-value]
            httpx2.post(f"{url}{path}", content=body, headers=sent, timeout=30) for url in (self.lean, self.plain)
        )


@pytest.fixture
def apps(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Apps]:
    # Given the server's app, whose HotRoutes records every request it passes on to the framework
    passed_on: list[str] = []
    wrapped = HotRoutes.__init__

    def spying(self: HotRoutes, app: Any) -> None:
        async def spy(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                passed_on.append(f"{scope['method']} {scope['path']}")
            await app(scope, receive, send)

        wrapped(self, spy)

    monkeypatch.setattr(HotRoutes, "__init__", spying)
    lean = create_app(server.rt)
    # and the same app without it: the framework's route
    plain = create_app(server.rt)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not HotRoutes]
    lean_port, plain_port = free_port(), free_port()
    with UvicornThread(lean, lean_port), UvicornThread(plain, plain_port):
        passed_on.clear()  # (the lifespan's start-up)
        yield _Apps(f"http://127.0.0.1:{lean_port}", f"http://127.0.0.1:{plain_port}", server.admin_key, passed_on)


def _session(url: str, key: str) -> str:
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    agent = client.beta.agents.create(name="hot", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="hot", config={"type": "cloud"})
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id).id


def _same_error(lean: httpx2.Response, plain: httpx2.Response) -> dict[str, Any]:
    assert lean.status_code == plain.status_code
    a, b = lean.json(), plain.json()
    assert a["error"] == b["error"] and a["type"] == b["type"] == "error"
    assert lean.headers["request-id"] == a["request_id"]
    assert lean.headers.get("x-should-retry") == plain.headers.get("x-should-retry")
    assert lean.headers["content-type"] == plain.headers["content-type"]
    return dict(a["error"])


def test_a_send_answers_as_the_route_does_without_the_framework(apps: _Apps, server: Server) -> None:
    # Given a session, and a user.message with text beyond ASCII
    sid = _session(apps.lean, apps.key)
    apps.passed_on.clear()
    body = {"events": [{"type": "user.message", "content": [{"type": "text", "text": "héllo ✓ \U0001f600"}]}]}
    # When it is sent to each app
    lean, plain = apps.both(f"/v1/sessions/{sid}/events", json.dumps(body).encode())
    # Then the lean app answered it itself, with what the route answers (ids and times are the events' own)
    assert apps.passed_on == []
    assert lean.status_code == plain.status_code == 200
    assert lean.headers["content-type"] == plain.headers["content-type"] == "application/json"
    a, b = lean.json()["data"], plain.json()["data"]
    assert [sorted(e) for e in a] == [sorted(e) for e in b]
    assert [e["content"] for e in a] == [e["content"] for e in b] == [body["events"][0]["content"]]
    assert lean.headers["request-id"].startswith("req_")
    # And the official SDK, validating strictly, reads the lean answer (and both events are in the log, in order)
    strict = anthropic.Anthropic(base_url=apps.lean, api_key=apps.key, max_retries=0, _strict_response_validation=True)
    sent = strict.beta.sessions.events.send(
        sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "again"}]}]
    )
    assert sent.data[0].type == "user.message"
    logged = [e.id for e in strict.beta.sessions.events.list(sid) if e.type == "user.message"]
    assert logged[:3] == [a[0]["id"], b[0]["id"], sent.data[0].id]
    assert apps.passed_on == [f"GET /v1/sessions/{sid}/events"]


def test_refusals_and_failures_answer_the_same_envelope(apps: _Apps) -> None:
    sid = _session(apps.lean, apps.key)
    apps.passed_on.clear()
    good = json.dumps({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]}).encode()
    path = f"/v1/sessions/{sid}/events"
    # When the door refuses (a bad key, no beta header, a body over the cap) or the service does (no such session)
    cases = {
        "key": apps.both(path, good, authorization="Bearer nope"),
        "beta": apps.both(path, good, anthropic_beta=""),
        "session": apps.both("/v1/sessions/sesn_0000000000000000000000000/events", good),
        "size": apps.both(path, b" " * (CAP + 1)),
    }
    # Then each app answers the same envelope, status and headers, without the framework's help
    assert _same_error(*cases["key"])["type"] == "authentication_error"
    assert _same_error(*cases["beta"])["type"] == "not_found_error"
    assert _same_error(*cases["session"])["type"] == "not_found_error"
    assert _same_error(*cases["size"])["type"] == "request_too_large"
    assert apps.passed_on == []


def test_what_it_does_not_answer_exactly_goes_to_the_framework(apps: _Apps) -> None:
    sid = _session(apps.lean, apps.key)
    apps.passed_on.clear()
    path = f"/v1/sessions/{sid}/events"
    # When the body does not validate, or is not JSON, or is not sent as JSON
    bad_type = json.dumps({"events": [{"type": "user.mesage", "content": []}]}).encode()
    for lean, plain in (
        apps.both(path, bad_type),
        apps.both(path, b"{not json"),
        apps.both(path, b'{"events": []}', content_type="text/plain"),
    ):
        # Then the framework's 400 names what is wrong, as it always has
        assert _same_error(lean, plain)["type"] == "invalid_request_error"
    assert apps.passed_on == [f"POST {path}"] * 3
    # And a send with an Idempotency-Key is replayed by the door's records, not sent twice
    apps.passed_on.clear()
    good = json.dumps({"events": [{"type": "user.message", "content": [{"type": "text", "text": "once"}]}]}).encode()
    first, _ = apps.both(path, good, idempotency_key="k-1")
    again, _ = apps.both(path, good, idempotency_key="k-1")
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"][0]["id"] == first.json()["data"][0]["id"]
    assert apps.passed_on == [f"POST {path}"] * 2
