"""Webhooks through the official SDK: endpoints (`client.beta.organization.webhooks`), signed deliveries verified with
`client.beta.webhooks.unwrap`, retries, the delivery log, auto-disable, the address policy, and kill -9.

Embedded only: on AWS the same deliverer runs in two functions, tested in tests/aws/test_webhook_delivery_on_moto.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import anthropic
import pytest

from managed_agents.domain.errors import ServiceUnavailable
from managed_agents.mcp_proxy.credentials import RefreshFailed
from managed_agents.settings import ServerSettings
from managed_agents.testing.mcp_servers import McpTestServer, OAuthIssuer
from managed_agents.testing.scripted_model import ScriptedModelServer
from managed_agents.wiring import DB_FILE
from tests.e2e.conftest import Server, embedded_only, sandbox_isolation, strict_client, wait_idle, wait_until
from tests.e2e.loopback_http import serve
from tests.e2e.sandbox_support import tool_step

pytestmark = embedded_only("the e2e AWS leg runs no webhook functions: tests/aws/test_webhook_delivery_on_moto.py")
HELLO = [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]
# an initial event a create refuses: a file block naming no file of the workspace
MISSING_FILE = [
    {
        "type": "user.message",
        "content": [{"type": "document", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}],
    }
]


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers `fail_first` requests with 500, then 200; keeps what it got."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                with receiver.lock:
                    status = 500 if len(receiver.received) < receiver.fail_first else 200
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def delivered(self) -> list[tuple[dict[str, str], str]]:
        with self.lock:
            return [(h, b) for h, b, status in self.received if status == 200]


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "data"),
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        sandbox_isolation=sandbox_isolation(),
        webhook_retry_base_seconds=0.1,
        webhook_retry_max_seconds=0.2,
        webhook_poll_seconds=0.05,
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with serve(r.handler()) as url:
        yield r, url + "/hooks"


def _session(client: anthropic.Anthropic, **agent: Any) -> str:
    a = client.beta.agents.create(name="a", model="claude-sonnet-4-6", **agent)
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    return client.beta.sessions.create(agent=a.id, environment_id=env.id).id


def _say(client: anthropic.Anthropic, sid: str) -> None:
    client.beta.sessions.events.send(sid, events=HELLO)  # type: ignore[arg-type]


def test_idle_and_requires_action_arrive_signed_and_unwrap(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    # Given an endpoint for the session status events, created through the SDK
    endpoint = client.beta.organization.webhooks.create(
        url=url,
        enabled_events=["session.status_idled", "session.requires_action"],  # type: ignore[list-item]
        name="ops",
    )
    secret = endpoint.signing_secret
    assert secret.startswith("whsec_") and endpoint.state == "enabled"
    assert "signing_secret" not in client.beta.organization.webhooks.retrieve(endpoint.id).model_dump()
    # When a session calls a custom tool (it then waits for the caller: requires_action)
    sid = _session(
        client,
        tools=[
            {
                "type": "custom",
                "name": "lookup",
                "description": "look",
                "input_schema": {"type": "object", "properties": {}},
            }
        ],
    )
    model_server.push(tool_step("toolu_1", "lookup", {}))
    _say(client, sid)
    wait_idle(client, sid, timeout=30)
    # Then the receiver gets both events, each verified by the SDK with the endpoint's secret
    got = wait_until(lambda: len(r.delivered()) >= 2 and r.delivered(), timeout=20)
    events = [client.beta.webhooks.unwrap(body, headers=headers, key=secret) for headers, body in got]
    assert sorted(e.data.type for e in events) == ["session.requires_action", "session.status_idled"]
    for e in events:
        assert e.type == "event" and e.data.id == sid and e.data.workspace_id
    # And a payload signed with another secret does not verify
    headers, body = got[0]
    with pytest.raises(Exception, match="signature"):
        client.beta.webhooks.unwrap(body, headers=headers, key="whsec_" + "A" * 43 + "=")


def test_a_receiver_failing_three_times_gets_the_event_once_after_retries(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    r.fail_first = 3
    endpoint = client.beta.organization.webhooks.create(url=url, enabled_events=["session.status_idled"])  # type: ignore[list-item]
    sid = _session(client)
    model_server.push("done")
    _say(client, sid)
    wait_idle(client, sid, timeout=30)
    # Then after three failed attempts the fourth delivers it, once
    wait_until(lambda: r.delivered(), timeout=30)
    assert [s for _, _, s in r.received] == [500, 500, 500, 200]
    ids = {h["webhook-id"] for h, _, _ in r.received}
    assert len(ids) == 1  # every attempt is the same event (receivers deduplicate on it)

    # And the delivery log shows the attempts
    def delivered() -> Any:
        log = client.get(
            f"/v1/organizations/webhooks/{endpoint.id}/deliveries",
            cast_to=object,
            options={"headers": {"anthropic-beta": "webhooks-2026-10-07"}},
        )
        return log["data"][0]["state"] == "delivered" and log  # type: ignore[index]

    (delivery,) = wait_until(delivered, timeout=30)["data"]  # (recorded once the receiver's answer is read)
    assert delivery["state"] == "delivered" and delivery["event"]["type"] == "session.status_idled"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 200]
    assert all(a["latency_ms"] >= 0 for a in delivery["attempts"])
    assert "_payload" not in delivery


def test_an_endpoint_that_keeps_failing_is_disabled(
    server_settings: ServerSettings,
    client: anthropic.Anthropic,
    model_server: ScriptedModelServer,
    receiver: tuple[Receiver, str],
) -> None:
    r, url = receiver
    r.fail_first = 10**6
    endpoint = client.beta.organization.webhooks.create(url=url, enabled_events=["session.status_idled"])  # type: ignore[list-item]
    sid = _session(client)
    model_server.push("done")
    _say(client, sid)
    wait_idle(client, sid, timeout=30)
    # Then once the delivery ran out of attempts, the endpoint is disabled, saying why
    got = wait_until(
        lambda: (e := client.beta.organization.webhooks.retrieve(endpoint.id)).state == "disabled" and e, timeout=60
    )
    assert got.disabled_reason
    assert len(r.received) == 16  # webhook_max_attempts
    # And enabling it again clears the reason
    again = client.beta.organization.webhooks.update(endpoint.id, state="enabled")
    assert again.state == "enabled" and again.disabled_reason == ""


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://169.254.169.254/latest", "ftp://127.0.0.1/x"])
def test_private_and_link_local_targets_are_refused(client: anthropic.Anthropic, url: str) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.beta.organization.webhooks.create(url=url, enabled_events=["session.status_idled"])  # type: ignore[list-item]


def test_endpoints_crud_through_the_sdk(client: anthropic.Anthropic, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    a = client.beta.organization.webhooks.create(url=url, enabled_events=["session.status_idled"])  # type: ignore[list-item]
    b = client.beta.organization.webhooks.create(url=url, enabled_events=["agent.created"], description="d")  # type: ignore[list-item]
    page = client.beta.organization.webhooks.list(limit=1)
    assert [e.id for e in page.data] == [b.id] and page.has_more
    assert [e.id for e in client.beta.organization.webhooks.list()] == [b.id, a.id]
    updated = client.beta.organization.webhooks.update(a.id, name="renamed", enabled_events=[])
    assert updated.name == "renamed" and updated.enabled_events == ["session.status_idled"]
    new_secret = client.beta.organization.webhooks.regenerate_signing_secret(a.id)
    assert new_secret.signing_secret.startswith("whsec_") and new_secret.signing_secret != a.signing_secret
    deleted = client.beta.organization.webhooks.delete(a.id)
    assert deleted.type == "webhook_endpoint_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.organization.webhooks.retrieve(a.id)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.organization.webhooks.create(url=url, enabled_events=["session.exploded"])  # type: ignore[list-item]


def test_agent_environment_deployment_and_vault_events_are_delivered(
    client: anthropic.Anthropic, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    # Given an endpoint for resource events (not session ones)
    wanted = [
        "agent.created",
        "agent.updated",
        "agent.archived",
        "environment.created",
        "environment.deleted",
        "deployment.created",
        "deployment.paused",
        "deployment.unpaused",
        "deployment.archived",
        "vault.created",
        "vault.archived",
    ]
    endpoint = client.beta.organization.webhooks.create(url=url, enabled_events=wanted)  # type: ignore[arg-type]
    # When those resources are written through the API
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    client.beta.agents.update(agent.id, version=agent.version, name="b")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    other = client.beta.environments.create(name="gone", config={"type": "cloud"})
    client.beta.environments.delete(other.id)
    dep = client.beta.deployments.create(
        agent=agent.id,
        environment_id=env.id,
        name="d",
        initial_events=HELLO,  # type: ignore[arg-type]
    )
    client.beta.deployments.pause(dep.id)
    client.beta.deployments.pause(dep.id)  # (already paused: no second event)
    client.beta.deployments.unpause(dep.id)
    client.beta.deployments.archive(dep.id)
    client.beta.agents.archive(agent.id)
    vault = client.beta.vaults.create(display_name="v")
    client.beta.vaults.archive(vault.id)
    # Then each event arrives once, signed, naming its resource
    expected = sorted([*wanted, "environment.created"])  # (two environments)
    got = wait_until(lambda: len(r.delivered()) >= len(expected) and r.delivered(), timeout=30)
    events = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    by_type = {e.data.type: e.data.id for e in events}
    assert sorted(e.data.type for e in events) == expected
    assert by_type["agent.created"] == by_type["agent.archived"] == agent.id
    assert by_type["environment.deleted"] == other.id and by_type["vault.archived"] == vault.id
    assert by_type["deployment.paused"] == by_type["deployment.unpaused"] == dep.id
    assert all(e.data.workspace_id for e in events)


def test_session_deployment_run_credential_and_thread_events_are_delivered(
    client: anthropic.Anthropic, model_server: ScriptedModelServer, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    # Given an endpoint for the session, deployment run, vault credential and thread events
    wanted = [
        "session.created",
        "session.archived",
        "session.deleted",
        "deployment_run.started",
        "deployment_run.succeeded",
        "deployment_run.failed",
        "vault_credential.created",
        "vault_credential.archived",
        "vault_credential.deleted",
        "session.thread_created",
        "session.thread_idled",
    ]
    endpoint = client.beta.organization.webhooks.create(url=url, enabled_events=wanted)  # type: ignore[arg-type]
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # When sessions are created, one archived and one deleted
    solo = client.beta.agents.create(name="solo", model="claude-sonnet-4-6")
    archived = client.beta.sessions.create(agent=solo.id, environment_id=env.id).id
    deleted = client.beta.sessions.create(agent=solo.id, environment_id=env.id).id
    client.beta.sessions.archive(archived)
    client.beta.sessions.delete(deleted)
    # And a deployment runs once with its agent, and once after the agent was archived
    model_server.push({"match": "deployed run", "content": [{"type": "text", "text": "done"}]})
    dep = client.beta.deployments.create(
        agent=solo.id,
        environment_id=env.id,
        name="d",
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "deployed run"}]}],
    )
    ok = client.beta.deployments.run(dep.id)
    client.beta.agents.archive(solo.id)
    failed = client.beta.deployments.run(dep.id)
    assert ok.session_id and failed.error is not None
    # And a vault's credentials are created, one archived and one deleted
    vault = client.beta.vaults.create(display_name="v")
    kept = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "t1", "mcp_server_url": "https://a.example.com/mcp"}
    )
    gone = client.beta.vaults.credentials.create(
        vault.id, auth={"type": "static_bearer", "token": "t2", "mcp_server_url": "https://b.example.com/mcp"}
    )
    client.beta.vaults.credentials.archive(kept.id, vault_id=vault.id)
    client.beta.vaults.credentials.delete(gone.id, vault_id=vault.id)
    # And a coordinator delegates to a subagent, whose child thread runs and idles
    helper = client.beta.agents.create(name="helper", model="claude-sonnet-4-6")
    lead = client.beta.agents.create(
        name="lead", model="claude-sonnet-4-6", multiagent={"type": "coordinator", "agents": [helper.id]}
    )
    coordinated = client.beta.sessions.create(agent=lead.id, environment_id=env.id).id
    model_server.push(
        {
            "match": "delegate it",
            "content": [{"type": "tool_use", "name": "delegate_to_helper", "input": {"message": "help out"}}],
        },
        {"match": "help out", "content": [{"type": "text", "text": "helped"}]},
        {"match": "helped", "content": [{"type": "text", "text": "all done"}]},
    )
    client.beta.sessions.events.send(
        coordinated, events=[{"type": "user.message", "content": [{"type": "text", "text": "delegate it"}]}]
    )
    wait_idle(client, coordinated, timeout=60)
    child = next(t for t in client.beta.sessions.threads.list(coordinated) if t.parent_thread_id)
    # Then each event arrives once, signed, naming its resource (and the vault or the thread where the reference
    # says so)
    expected = sorted(
        ["session.created"] * 4  # archived, deleted, the deployment run's, the coordinated
        + ["session.archived", "session.deleted", "deployment_run.started", "deployment_run.started"]
        + ["deployment_run.succeeded", "deployment_run.failed"]
        + ["vault_credential.created"] * 2
        + ["vault_credential.archived", "vault_credential.deleted", "session.thread_created", "session.thread_idled"]
    )
    got = wait_until(lambda: len(r.delivered()) >= len(expected) and r.delivered(), timeout=30)
    events = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    assert sorted(e.data.type for e in events) == expected
    data = [e.data.model_dump() for e in events]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for d in data:
        by_type.setdefault(d["type"], []).append(d)
    assert {d["id"] for d in by_type["session.created"]} == {archived, deleted, ok.session_id, coordinated}
    assert by_type["session.archived"][0]["id"] == archived and by_type["session.deleted"][0]["id"] == deleted
    assert {d["id"] for d in by_type["deployment_run.started"]} == {ok.id, failed.id}
    assert by_type["deployment_run.succeeded"][0]["id"] == ok.id
    assert by_type["deployment_run.failed"][0]["id"] == failed.id
    assert {d["id"] for d in by_type["vault_credential.created"]} == {kept.id, gone.id}
    assert by_type["vault_credential.archived"][0]["id"] == kept.id
    assert by_type["vault_credential.deleted"][0]["id"] == gone.id
    assert all(d["vault_id"] == vault.id for t in by_type if t.startswith("vault_credential.") for d in by_type[t])
    for t in ("session.thread_created", "session.thread_idled"):
        (d,) = by_type[t]
        assert d["id"] == coordinated and d["session_thread_id"] == child.id
    assert all(d["workspace_id"] for d in data)


def test_signing_secrets_are_kept_encrypted_not_in_the_database(
    client: anthropic.Anthropic, receiver: tuple[Receiver, str], server_settings: ServerSettings
) -> None:
    r, url = receiver
    data = Path(server_settings.data_dir)

    def stored_in_database(secret: str) -> bool:
        raw = secret.removeprefix("whsec_").encode()
        return any(raw in p.read_bytes() for p in data.glob(f"{DB_FILE}*"))

    # Given an endpoint created and its secret regenerated, each with an Idempotency-Key (whose replay record keeps
    # the response 24 hours), and each request sent again with its key
    once = {"Idempotency-Key": "create-it"}
    endpoint = client.beta.organization.webhooks.create(
        url=url,
        enabled_events=["agent.created"],  # type: ignore[list-item]
        extra_headers=once,
    )
    first = endpoint.signing_secret
    replayed = client.beta.organization.webhooks.create(
        url=url,
        enabled_events=["agent.created"],  # type: ignore[list-item]
        extra_headers=once,
    )
    assert (replayed.id, replayed.signing_secret) == (endpoint.id, first)  # (a replay: the same endpoint)
    again = {"Idempotency-Key": "regenerate-it"}
    regenerate = client.beta.organization.webhooks.regenerate_signing_secret
    second = regenerate(endpoint.id, extra_headers=again).signing_secret
    assert regenerate(endpoint.id, extra_headers=again).signing_secret == second
    # Then no secret is in the database's files: the encrypted secret store holds the current one, and the replay
    # records keep their responses without it (a replay reads the current secret again)
    assert first != second and not stored_in_database(second) and not stored_in_database(first)
    assert len(list(client.beta.organization.webhooks.list())) == 1
    # And a replay of the create after the regenerate answers the secret that is valid now
    assert (
        client.beta.organization.webhooks.create(
            url=url,
            enabled_events=["agent.created"],  # type: ignore[list-item]
            extra_headers=once,
        ).signing_secret
        == second
    )
    # And a delivery is signed with the current secret, not the old one
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    ((headers, body),) = wait_until(lambda: r.delivered(), timeout=20)
    assert client.beta.webhooks.unwrap(body, headers=headers, key=second).data.id == agent.id
    with pytest.raises(Exception, match="signature"):
        client.beta.webhooks.unwrap(body, headers=headers, key=first)
    # And deleting the endpoint removes its stored secret
    kept = sorted((data / "secrets").iterdir())
    client.beta.organization.webhooks.delete(endpoint.id)
    assert len(sorted((data / "secrets").iterdir())) == len(kept) - 1


def test_a_failed_session_create_sends_no_webhook(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    endpoint = client.beta.organization.webhooks.create(
        url=url,
        enabled_events=["session.created", "session.deleted", "agent.created"],  # type: ignore[list-item]
    )
    agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
    env = client.beta.environments.create(name="e", config={"type": "cloud"})
    # Given a create whose initial event is refused (a file block naming no file of the workspace)
    with pytest.raises(anthropic.BadRequestError, match="file"):
        client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=MISSING_FILE)  # type: ignore[arg-type]
    # And a create whose initial events' append fails in the store (after the record was written)
    events = server.rt.sessions.events
    real_append = events.append

    def failing_append(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable("the event store is down")

    events.append = failing_append  # type: ignore[method-assign]
    try:
        with pytest.raises(anthropic.APIStatusError) as failed:
            client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=HELLO)  # type: ignore[arg-type]
        assert failed.value.status_code == 503
    finally:
        events.append = real_append  # type: ignore[method-assign]
    # When a create with initial events succeeds, then a last event marks the end of what was sent
    model_server.push({"content": [{"type": "text", "text": "hello"}]})
    ok = client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=HELLO)  # type: ignore[arg-type]
    wait_idle(client, ok.id, timeout=30)
    last = client.beta.agents.create(name="last", model="claude-sonnet-4-6")
    got = wait_until(lambda: any(last.id in body for _, body in r.delivered()) and r.delivered(), timeout=20)
    # Then the failed creates left no session and sent nothing; the successful one sent exactly session.created
    events_seen = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    seen = sorted((e.data.type, e.data.id) for e in events_seen if e.data.type.startswith("session."))
    assert seen == [("session.created", ok.id)]
    assert [s.id for s in client.beta.sessions.list()] == [ok.id]


def test_a_failed_oauth_refresh_sends_refresh_failed_once_per_failure(
    server: Server, client: anthropic.Anthropic, model_server: ScriptedModelServer, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    endpoint = client.beta.organization.webhooks.create(
        url=url,
        enabled_events=["vault_credential.refresh_failed", "agent.created"],  # type: ignore[list-item]
    )
    issuer = OAuthIssuer(access_ttl=3600)
    with McpTestServer(oauth=issuer) as srv:
        # Given a session whose MCP credential's access token expired and whose refresh token was revoked
        access, refresh = issuer.issue()
        vault = client.beta.vaults.create(display_name="o")
        cred = client.beta.vaults.credentials.create(
            vault.id,
            auth={
                "type": "mcp_oauth",
                "access_token": access,
                "mcp_server_url": srv.url,
                "refresh": {
                    "client_id": issuer.client_id,
                    "refresh_token": refresh,
                    "token_endpoint": srv.token_endpoint,
                    "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": issuer.client_secret},
                },
            },
        )
        agent = client.beta.agents.create(
            name="a",
            model="claude-sonnet-4-6",
            mcp_servers=[{"type": "url", "name": "tools", "url": srv.url}],
            tools=[{"type": "mcp_toolset", "mcp_server_name": "tools"}],
        )
        env = client.beta.environments.create(name="e", config={"type": "cloud"})
        sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id]).id
        issuer.expire_all()
        issuer.revoke_refresh_tokens()
        # When a turn finds the token dead and fails to refresh it, and the proxy tries again later
        model_server.push("no tools today")
        _say(client, sid)
        wait_idle(client, sid, timeout=30)
        resolver = server.rt.mcp_proxy.resolver  # type: ignore[union-attr]
        session = server.rt.resources.get_by_id("session", sid)
        assert session is not None
        again = resolver.find(session.workspace_id, [vault.id], srv.url)
        assert again is not None
        with pytest.raises(RefreshFailed):
            resolver.refresh(again)
        assert issuer.refused_refreshes == 2
        last = client.beta.agents.create(name="last", model="claude-sonnet-4-6")
        got = wait_until(lambda: any(last.id in body for _, body in r.delivered()) and r.delivered(), timeout=20)
    # Then one vault_credential.refresh_failed arrived (the failure, not each attempt), naming the credential's vault
    events = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    failed = [e.data for e in events if e.data.type == "vault_credential.refresh_failed"]
    assert [(d.id, d.vault_id) for d in failed] == [(cred.id, vault.id)]  # type: ignore[union-attr]


def test_workspace_endpoints_at_v1_webhooks_are_strict_clean_and_the_organization_path_is_not(
    server: Server, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    strict = strict_client(server)
    headers = {"anthropic-beta": "webhooks-2026-10-07"}
    # Given the SDK's organization endpoint API with strict validation: its types allow organization events only,
    # so an endpoint with session events fails the SDK's own check (the endpoint is still made)
    with pytest.raises(anthropic.APIResponseValidationError):
        strict.beta.organization.webhooks.create(url=url, enabled_events=["session.created"])  # type: ignore[list-item]
    # When workspace endpoints are managed at our path, /v1/webhooks, through the same strict client
    made: Any = strict.post(
        "/v1/webhooks",
        body={"url": url, "enabled_events": ["agent.created"], "name": "ours"},
        cast_to=object,
        options={"headers": headers},
    )
    eid = made["id"]
    assert made["signing_secret"].startswith("whsec_") and made["enabled_events"] == ["agent.created"]
    got: Any = strict.get(f"/v1/webhooks/{eid}", cast_to=object, options={"headers": headers})
    assert "signing_secret" not in got and got["name"] == "ours"
    listed: Any = strict.get("/v1/webhooks", cast_to=object, options={"headers": headers})
    assert {e["id"] for e in listed["data"]} >= {eid}
    updated: Any = strict.post(
        f"/v1/webhooks/{eid}",
        body={"enabled_events": ["agent.created", "session.created"]},
        cast_to=object,
        options={"headers": headers},
    )
    assert updated["enabled_events"] == ["agent.created", "session.created"]
    # Then deliveries are signed with its secret, and its delivery log is there too
    agent = strict.beta.agents.create(name="a", model="claude-sonnet-4-6")
    ((h, body),) = wait_until(lambda: [d for d in r.delivered() if agent.id in d[1]], timeout=20)
    assert strict.beta.webhooks.unwrap(body, headers=h, key=made["signing_secret"]).data.id == agent.id
    log: Any = wait_until(
        lambda: strict.get(f"/v1/webhooks/{eid}/deliveries", cast_to=object, options={"headers": headers})["data"],
        timeout=20,
    )
    assert log[0]["state"] in ("pending", "delivered")
    # And the organization path is the same API on the same records (for the clients that used it)
    assert strict.get(f"/v1/organizations/webhooks/{eid}", cast_to=object, options={"headers": headers})["id"] == eid
    secret: Any = strict.post(
        f"/v1/webhooks/{eid}/regenerate_signing_secret", cast_to=object, options={"headers": headers}
    )
    assert secret["signing_secret"].startswith("whsec_")
    deleted: Any = strict.delete(f"/v1/webhooks/{eid}", cast_to=object, options={"headers": headers})
    assert deleted["id"] == eid
