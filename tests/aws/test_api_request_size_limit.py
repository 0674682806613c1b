"""A request body over what a Lambda invocation can carry is refused by the API Lambda with a readable 413.

A Lambda invocation carries at most 6 MB (6,291,456 bytes), the request's headers and API Gateway's event fields
included; a larger body never reaches the function. The API Lambda's app refuses bodies over 6,000,000 bytes itself,
in the error envelope, saying the limit and what to do, before reading any of it; API Gateway's own responses cover
what cannot reach the function (tests/infra/test_api_gateway_responses.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anthropic
import httpx2
import pytest

from managed_agents.api.lambda_app import create_lambda_app
from managed_agents.settings import LAMBDA_MAX_REQUEST_BYTES
from managed_agents.testing.loopback import UvicornThread, free_port
from managed_agents.wire.agents import AgentCreateParams
from managed_agents.wire.environments import EnvironmentCreateParams
from managed_agents.wire.sessions import SessionCreateParams
from tests.aws.conftest import AwsEnv


@dataclass
class Api:
    url: str
    key: str
    client: anthropic.Anthropic
    session_id: str
    env: AwsEnv


@pytest.fixture
def api(aws_env: AwsEnv) -> Iterator[Api]:
    app = create_lambda_app()
    rt = app.state.runtime
    ws = rt.keys.create_workspace("default")
    _, key = rt.keys.create_key(ws, name="k")
    agent = rt.agents.create(ws, AgentCreateParams.model_validate({"name": "a", "model": "claude-scripted"}))
    env = rt.environments.create(ws, EnvironmentCreateParams.model_validate({"name": "e", "config": {"type": "cloud"}}))
    sid = rt.sessions.create(
        ws, SessionCreateParams.model_validate({"agent": agent["id"], "environment_id": env["id"]})
    )["id"]
    port = free_port()
    with UvicornThread(app, port):
        url = f"http://127.0.0.1:{port}"
        yield Api(url, key, anthropic.Anthropic(base_url=url, api_key=key, max_retries=0), str(sid), aws_env)


def _image_message(size: int) -> dict[str, object]:
    """A user.message with an inline base64 image of `size` characters (how an image or PDF grows a request)."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * size}}
    return {"type": "user.message", "content": [image]}


def test_a_message_over_the_lambda_limit_is_a_413_that_says_the_limit_and_what_to_do(api: Api) -> None:
    # Given a session on the API Lambda's app, with its default limit
    assert LAMBDA_MAX_REQUEST_BYTES == 6_000_000
    # When the SDK sends a message with an inline image just over the limit
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        api.client.beta.sessions.events.send(api.session_id, events=[_image_message(LAMBDA_MAX_REQUEST_BYTES)])  # type: ignore[list-item]
    # Then the answer is 413 in the error envelope, with a request id, saying the limit and what to do instead
    error = caught.value
    assert error.status_code == 413 and error.request_id
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "request_too_large"
    message = body["error"]["message"]
    assert "at most 6,000,000 bytes per request" in message and "by reference" in message
    assert error.response.headers["x-should-retry"] == "false"
    # And nothing was logged
    assert api.env.deps.runtime.events.last_seq(api.session_id) == 0


def test_a_message_under_the_limit_is_accepted(api: Api) -> None:
    api.env.model.push("I see a blank image.")
    sent = api.client.beta.sessions.events.send(api.session_id, events=[_image_message(2_000_000)])  # type: ignore[list-item]
    assert [e.type for e in sent.data] == ["user.message"]


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(api: Api) -> None:
    # Given a body streamed in chunks, with no Content-Length (as an HTTP client may send it)
    def chunks() -> Iterator[bytes]:
        yield b'{"events": [{"type": "user.message", "content": [{"type": "text", "text": "'
        for _ in range(7):
            yield b"x" * 1_000_000
        yield b'"}]}]}'

    # When it is posted
    response = httpx2.post(
        f"{api.url}/v1/sessions/{api.session_id}/events",
        content=chunks(),
        headers={
            "authorization": f"Bearer {api.key}",
            "content-type": "application/json",
            "anthropic-beta": "managed-agents-2026-04-01",
        },
        timeout=60,
    )
    # Then reading stopped at the limit and the answer is the same 413
    assert response.status_code == 413
    assert "more than 6,000,000 bytes" in response.json()["error"]["message"]
    assert api.env.deps.runtime.events.last_seq(api.session_id) == 0
