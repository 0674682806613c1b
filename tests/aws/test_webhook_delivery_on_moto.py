"""Webhook delivery on AWS, in the moto platform: the events table's stream relayed by functions/webhooks `relay`
(through the synthesized mapping's filter), the delivery queue drained by `deliver`, to a receiver on loopback.

The platform plays the two event source mappings (`Platform.pump_webhooks`); IAM is enforced on the functions'
synthesized roles as everywhere in the platform. Loopback targets are allowed here by setting
MANAGED_AGENTS_WEBHOOK_ALLOW_LOOPBACK (the AWS default refuses them, as web_fetch does: tests/unit).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from botocore.exceptions import ClientError

from managed_agents.services.webhooks import SECRET_KEY, SECRET_NAME_KEY
from managed_agents.testing.mcp_servers import McpTestServer, OAuthIssuer
from tests.aws.platform import Platform, aws_platform
from tests.e2e.conftest import wait_until
from tests.e2e.loopback_http import serve
from tests.e2e.test_webhooks_delivery import HELLO, MISSING_FILE, Receiver
from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow

ENV = {
    "MANAGED_AGENTS_WEBHOOK_ALLOW_LOOPBACK": "true",
    "MANAGED_AGENTS_WEBHOOK_RETRY_BASE_SECONDS": "1",
    "MANAGED_AGENTS_WEBHOOK_RETRY_MAX_SECONDS": "2",
    "MANAGED_AGENTS_WEBHOOK_MAX_ATTEMPTS": "4",
}
BETA = {"anthropic-beta": "webhooks-2026-10-07"}


@pytest.fixture(scope="module")
def platform(default_synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with aws_platform(default_synth, tmp_path_factory.mktemp("webhooks"), env=ENV) as p:
        yield p


def _pumped_until(platform: Platform, done: Any, timeout: float = 30) -> Any:
    def step() -> Any:
        platform.pump_webhooks()
        return done()

    return wait_until(step, timeout, interval=0.2)


def _deliveries(platform: Platform, endpoint_id: str) -> list[dict[str, Any]]:
    page = platform.client.get(
        f"/v1/organizations/webhooks/{endpoint_id}/deliveries", cast_to=object, options={"headers": BETA}
    )
    assert isinstance(page, dict)
    return list(page["data"])


def test_a_session_turn_reaches_the_receiver_signed_through_stream_queue_and_lambda(platform: Platform) -> None:
    client = platform.client
    r = Receiver()
    with serve(r.handler()) as base:
        # Given an endpoint for two session status events
        endpoint = client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["session.status_idled", "session.status_run_started"],  # type: ignore[list-item]
        )
        # (its signing secret is kept in Secrets Manager, written by the API function: not in the record)
        assert platform.runtime is not None
        record = platform.runtime.resources.get_by_id("webhook_endpoint", endpoint.id)
        assert record is not None and SECRET_KEY not in record.doc and record.doc[SECRET_NAME_KEY]
        # When a session runs a turn, and the stream and the queue are polled as Lambda would
        platform.model.push("Hello")
        sid = platform.session([])
        platform.say(sid, "hi")
        log_types = [e.type for e in platform.wait_idle(sid)]
        # (one session.status_run_started per session.status_running: a turn the model failed runs again)
        expected = log_types.count("session.status_running") + log_types.count("session.status_idle")
        got = _pumped_until(platform, lambda: len(r.delivered()) >= expected and r.delivered())
    # Then each event arrives once, verified by the SDK with the endpoint's secret
    events = [client.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret) for headers, body in got]
    assert sorted(e.data.type for e in events) == sorted(
        ["session.status_idled"] + ["session.status_run_started"] * (expected - 1)
    )
    assert {e.data.id for e in events} == {sid} and len({e.id for e in events}) == expected
    # And the delivery log shows one successful attempt each, written by the deliver function
    log = _deliveries(platform, endpoint.id)
    assert [d["state"] for d in log] == ["delivered"] * expected
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200 for d in log)
    # And a stream batch delivered again (Lambda retries batches) sends nothing twice
    platform.webhook_pumps.iterators.clear()  # type: ignore[union-attr]
    platform.pump_webhooks()
    platform.pump_webhooks()
    assert len(r.received) == expected


def test_a_receiver_failing_three_times_gets_the_event_once_after_delayed_retries(platform: Platform) -> None:
    client = platform.client
    r = Receiver(fail_first=3)
    with serve(r.handler()) as base:
        # Given a receiver that answers 500 three times, then 200
        endpoint = client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["session.status_idled"],  # type: ignore[list-item]
        )
        # When a session idles
        platform.model.push("Hello")
        sid = platform.session([])
        platform.say(sid, "hi")
        platform.wait_idle(sid)
        # Then the event arrives after three failed attempts, retried through the queue's delays
        (headers, body), *more = _pumped_until(platform, lambda: r.delivered(), timeout=60)
    assert more == [] and [status for _, _, status in r.received] == [500, 500, 500, 200]
    event = client.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret)
    assert event.data.type == "session.status_idled" and event.data.id == sid
    (delivery,) = _deliveries(platform, endpoint.id)
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 200]
    # And every attempt carried the same webhook id (receivers deduplicate on it)
    assert len({h["webhook-id"] for h, _, _ in r.received}) == 1


def test_an_endpoint_that_keeps_failing_is_disabled(platform: Platform) -> None:
    client = platform.client
    r = Receiver(fail_first=100)
    with serve(r.handler()) as base:
        # Given a receiver that always fails
        endpoint = client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["session.status_idled"],  # type: ignore[list-item]
        )
        # When a session idles and the delivery runs out of its attempts (4 here)
        platform.model.push("Hello")
        sid = platform.session([])
        platform.say(sid, "hi")
        platform.wait_idle(sid)

        def disabled() -> bool:
            return client.beta.organization.webhooks.retrieve(endpoint.id).state == "disabled"

        _pumped_until(platform, disabled, timeout=60)
    # Then the endpoint is disabled with its reason, and its delivery failed after 4 attempts
    assert "4 attempts" in str(client.beta.organization.webhooks.retrieve(endpoint.id).disabled_reason)
    (delivery,) = _deliveries(platform, endpoint.id)
    assert delivery["state"] == "failed" and len(delivery["attempts"]) == 4
    assert len(r.received) == 4


def test_resource_and_session_events_reach_the_receiver_through_the_stream(platform: Platform) -> None:
    client = platform.client
    r = Receiver()
    with serve(r.handler()) as base:
        # Given an endpoint for agent, environment and session events
        wanted = ["agent.created", "agent.updated", "agent.archived", "environment.created", "environment.deleted"]
        wanted += ["session.created", "session.archived"]
        endpoint = client.beta.organization.webhooks.create(url=base + "/hooks", enabled_events=wanted)  # type: ignore[arg-type]
        # When the API Lambda writes those resources (each write puts its webhook item in the events table)
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
        client.beta.agents.update(agent.id, version=agent.version, name="b")
        env = client.beta.environments.create(name="gone", config={"type": "cloud"})
        with pytest.raises(anthropic.BadRequestError, match="file"):  # (a create that fails sends nothing)
            client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=MISSING_FILE)  # type: ignore[arg-type]
        sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
        client.beta.sessions.archive(sid)
        client.beta.agents.archive(agent.id)
        client.beta.agents.archive(agent.id)  # (archived already: no second event)
        client.beta.environments.delete(env.id)
        # And the stream (through the mapping's second filter) and the queue are polled as Lambda would
        got = _pumped_until(platform, lambda: len(r.delivered()) >= len(wanted) and r.delivered())
    # Then each event arrives once, verified by the SDK, naming its resource and workspace
    events = [client.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret) for headers, body in got]
    assert sorted(e.data.type for e in events) == sorted(wanted)
    by_type = {e.data.type: e.data.id for e in events}
    assert by_type["agent.created"] == by_type["agent.updated"] == by_type["agent.archived"] == agent.id
    assert by_type["environment.created"] == by_type["environment.deleted"] == env.id
    assert by_type["session.created"] == by_type["session.archived"] == sid
    assert all(e.data.workspace_id for e in events) and len({e.id for e in events}) == len(wanted)
    # And the stream read again (Lambda retries batches) sends nothing twice
    platform.webhook_pumps.iterators.clear()  # type: ignore[union-attr]
    platform.pump_webhooks()
    platform.pump_webhooks()
    assert len(r.delivered()) == len(wanted)


def test_the_aws_default_refuses_loopback_targets() -> None:
    from managed_agents.services.webhooks import WebhookSettings, check_target
    from managed_agents.settings import AwsSettings

    # Given the AWS settings' default (the web_fetch policy as is)
    default = AwsSettings.model_fields["webhook_allow_loopback"].default
    # Then a loopback target is refused
    with pytest.raises(Exception, match="non-public address"):
        check_target("http://127.0.0.1:9/hooks", WebhookSettings(allow_loopback=default))


def test_a_session_create_whose_append_fails_in_dynamodb_sends_no_webhook(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = platform.client
    r = Receiver()
    before = {s.id for s in client.beta.sessions.list()}  # (the module's other tests' sessions)
    with serve(r.handler()) as base:
        endpoint = client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["session.created", "session.deleted", "agent.created"],  # type: ignore[list-item]
        )
        agent = client.beta.agents.create(name="a", model="claude-sonnet-4-6")
        env = client.beta.environments.create(name="e", config={"type": "cloud"})
        # Given an events table whose transactions of initial user messages fail (after the record was written)
        assert platform.runtime is not None
        ddb = platform.runtime.events.inner.dynamodb  # type: ignore[attr-defined]
        real = ddb.transact_write_items

        def failing(**kwargs: Any) -> Any:
            if any(
                op.get("Put", {}).get("Item", {}).get("type") == {"S": "user.message"} for op in kwargs["TransactItems"]
            ):
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "TransactWriteItems")
            return real(**kwargs)

        monkeypatch.setattr(ddb, "transact_write_items", failing)
        # When a create with initial events fails there
        with pytest.raises(anthropic.APIStatusError) as failed:
            client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=HELLO)  # type: ignore[arg-type]
        assert failed.value.status_code == 503
        monkeypatch.setattr(ddb, "transact_write_items", real)
        # And one succeeds, then a last event marks the end of what was sent
        platform.model.push("Hello")
        ok = client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=HELLO)  # type: ignore[arg-type]
        platform.wait_idle(ok.id)
        last = client.beta.agents.create(name="last", model="claude-sonnet-4-6")
        got = _pumped_until(platform, lambda: any(last.id in body for _, body in r.delivered()) and r.delivered())
    # Then the failed create left no session and sent nothing; the successful one sent exactly session.created
    events = [client.beta.webhooks.unwrap(body, headers=headers, key=endpoint.signing_secret) for headers, body in got]
    seen = sorted((e.data.type, e.data.id) for e in events if e.data.type.startswith("session."))
    assert [s for s in seen if s[1] not in before] == [("session.created", ok.id)]
    assert [s.id for s in client.beta.sessions.list() if s.id not in before] == [ok.id]


def test_a_failed_oauth_refresh_in_the_mcp_proxy_lambda_sends_refresh_failed_once(platform: Platform) -> None:
    client = platform.client
    r = Receiver()
    issuer = OAuthIssuer(access_ttl=3600)
    with serve(r.handler()) as base, McpTestServer(oauth=issuer) as srv:
        endpoint = client.beta.organization.webhooks.create(
            url=base + "/hooks",
            enabled_events=["vault_credential.refresh_failed", "agent.created"],  # type: ignore[list-item]
        )
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
        # When two turns each find the token dead and the MCP proxy Lambda fails to refresh it
        for turn in (1, 2):
            platform.model.push("no tools today")
            platform.say(sid, "hi")
            platform.wait_idle(sid, count=turn)
        assert issuer.refused_refreshes >= 2
        # And the stream and the queue are polled until a last event
        last = client.beta.agents.create(name="last", model="claude-sonnet-4-6")
        got = _pumped_until(platform, lambda: any(last.id in body for _, body in r.delivered()) and r.delivered())
    # Then one vault_credential.refresh_failed arrived (the failure, not each attempt), naming the credential's vault
    events = [client.beta.webhooks.unwrap(body, headers=h, key=endpoint.signing_secret) for h, body in got]
    failed = [e.data for e in events if e.data.type == "vault_credential.refresh_failed"]
    assert [(d.id, d.vault_id) for d in failed] == [(cred.id, vault.id)]  # type: ignore[union-attr]
