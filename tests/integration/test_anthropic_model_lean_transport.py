"""The async model path's HTTP/1.1 transport (adapters/lean_http.py), through the adapter, against a raw TCP endpoint
that frames each answer as told: connection reuse, body framings, interim responses and connections the peer closed.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
from managed_agents.adapters.lean_http import LeanAsyncTransport
from managed_agents.adapters.local.in_process_orchestrator import ThreadCancelToken
from managed_agents.ports import ModelError
from tests.own_loop import run_on_own_loop

REQUEST = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def _sse(text: str) -> bytes:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _answer(text: str, framing: str) -> bytes:
    body = _sse(text)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    if framing == "length":
        return head + b"content-length: %d\r\n\r\n" % len(body) + body
    if framing == "chunked":  # small chunks, a chunk extension and a trailer
        chunks = b"".join(
            b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
        )
        return head + b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\nx-trailer: yes\r\n\r\n"
    if framing == "close":  # no length: the body ends with the connection
        return head + b"connection: close\r\n\r\n" + body
    if framing == "interim":
        return b"HTTP/1.1 100 Continue\r\n\r\n" + head + b"content-length: %d\r\n\r\n" % len(body) + body
    raise AssertionError(framing)


@dataclass
class RawEndpoint:
    """Answers each request with the next scripted action: ("answer", text, framing), ("hang up",) to close the
    connection without answering, or ("answer and hang up", text, framing). Records (connection number, request)."""

    port: int = 0
    actions: queue.Queue[tuple[str, ...]] = field(default_factory=queue.Queue)
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    connections: int = 0

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, self.connections), daemon=True).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(data) < length:
                    data += conn.recv(65536)
                self.requests.append((number, head + b"\r\n\r\n" + data[:length]))
                data = data[length:]
                action = self.actions.get(timeout=10)
                if action[0] == "hang up":
                    return
                conn.sendall(_answer(action[1], action[2]))
                if action[0] == "answer and hang up" or action[2] == "close":
                    return


@pytest.fixture
def endpoint() -> Iterator[RawEndpoint]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    ep = RawEndpoint(port=listener.getsockname()[1])
    threading.Thread(target=ep.serve, args=(listener,), daemon=True).start()
    yield ep
    listener.close()


@pytest.fixture
def model(endpoint: RawEndpoint) -> Iterator[AnthropicMessagesModel]:
    m = AnthropicMessagesModel(api_key="test", base_url=f"http://127.0.0.1:{endpoint.port}", timeout=10)
    yield m
    m.close()


def _text(model: AnthropicMessagesModel) -> str:
    return str(model.stream_message(dict(REQUEST), cancel=ThreadCancelToken()).content[0]["text"])


def test_requests_one_at_a_time_share_one_connection_and_overlapping_ones_get_their_own(
    endpoint: RawEndpoint, model: AnthropicMessagesModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts: list[object] = []
    create = httpx2.create_ssl_context

    def counted(*args: object, **kwargs: object) -> object:
        contexts.append(create(*args, **kwargs))  # type: ignore[arg-type]
        return contexts[-1]

    monkeypatch.setattr(httpx2, "create_ssl_context", counted)
    # Given three requests made one after another
    for i in range(3):
        endpoint.actions.put(("answer", f"r{i}", "length"))
    # Then they are answered on one connection
    assert [_text(model) for _ in range(3)] == ["r0", "r1", "r2"]
    assert endpoint.connections == 1
    # When three overlap, Then each has a connection, and all go back to the pool for the next ones
    out: list[str] = []
    started = threading.Barrier(3)

    def call() -> None:
        started.wait()
        out.append(_text(model))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    while len(endpoint.requests) < 6:  # all three arrived before any is answered
        time.sleep(0.01)
    for _ in range(3):
        endpoint.actions.put(("answer", "overlap", "length"))
    for t in threads:
        t.join(10)
    assert out == ["overlap"] * 3
    assert endpoint.connections == 3
    for i in range(3):
        endpoint.actions.put(("answer", f"again{i}", "length"))
    assert [_text(model) for _ in range(3)] == ["again0", "again1", "again2"]
    assert endpoint.connections == 3
    assert len(contexts) == 1  # one TLS context, made once


@pytest.mark.parametrize("framing", ["length", "chunked", "close", "interim"])
def test_a_body_framed_by_length_chunks_or_the_close_reads_alike(
    endpoint: RawEndpoint, model: AnthropicMessagesModel, framing: str
) -> None:
    # Given an answer framed so, then another
    endpoint.actions.put(("answer", "framed", framing))
    endpoint.actions.put(("answer", "next", "length"))
    # Then both read whole; only a body that ended with its connection costs a new one
    assert _text(model) == "framed"
    assert _text(model) == "next"
    assert endpoint.connections == (2 if framing == "close" else 1)


def test_an_idle_connection_the_peer_closed_is_not_used_again(
    endpoint: RawEndpoint, model: AnthropicMessagesModel
) -> None:
    # Given an endpoint that closes its connection after answering (without saying so in the headers)
    endpoint.actions.put(("answer and hang up", "first", "length"))
    assert _text(model) == "first"
    time.sleep(0.2)  # the close reaches the client's loop
    # When the next request comes, Then it goes on a new connection and is answered
    endpoint.actions.put(("answer", "second", "length"))
    assert _text(model) == "second"
    assert endpoint.connections == 2
    assert len(endpoint.requests) == 2


def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one(
    endpoint: RawEndpoint, model: AnthropicMessagesModel
) -> None:
    # Given a kept-alive connection that the endpoint drops when the next request arrives (the keep-alive race)
    endpoint.actions.put(("answer", "first", "length"))
    assert _text(model) == "first"
    endpoint.actions.put(("hang up",))
    endpoint.actions.put(("answer", "second", "length"))
    # Then the request is sent again on a new connection and answered (no error for the harness to retry)
    assert _text(model) == "second"
    assert [number for number, _ in endpoint.requests] == [1, 1, 2]


def test_a_new_connection_closed_before_answering_is_a_retryable_connection_error(
    endpoint: RawEndpoint, model: AnthropicMessagesModel
) -> None:
    # Given an endpoint that hangs up on the first request of a new connection
    endpoint.actions.put(("hang up",))
    # Then the harness gets a retryable connection error (sent once: no retry on a connection that was new)
    with pytest.raises(ModelError) as failure:
        model.stream_message(dict(REQUEST), cancel=ThreadCancelToken())
    assert failure.value.kind == "connection" and failure.value.retryable
    assert len(endpoint.requests) == 1


def _self_signed(name: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for DNS name `name` and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_checks_and_sends_the_name_the_sdk_gives_for_the_host(tmp_path: Path) -> None:
    """The SDK names the TLS server name of a host with underscores in the request's `sni_hostname` extension (an
    underscore is not valid in one): the connection is made to the URL's host and verified against that name."""
    cert, key = _self_signed("model-gateway", tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        raw, _ = listener.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def fetch() -> tuple[int, bytes]:
        async with httpx2.AsyncClient(transport=LeanAsyncTransport(client_ctx)) as client:
            request = client.build_request(
                "GET", f"https://127.0.0.1:{port}/health", extensions={"sni_hostname": "model-gateway"}
            )
            response = await client.send(request)
            return response.status_code, response.content

    try:
        assert run_on_own_loop(fetch(), timeout=30) == (200, b"ok")
    finally:
        listener.close()
    assert names == ["model-gateway"]
