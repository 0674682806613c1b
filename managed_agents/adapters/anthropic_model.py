"""The model port on the official SDK: streaming Messages API, any Anthropic-compatible endpoint.

The SDK's own retries are off (max_retries=0): the harness owns retries so that every attempt is visible as
`session.error` / `session.status_rescheduled` events. Cancelling the token closes the HTTP stream, so an
interrupt stops a turn mid-generation rather than after it.
"""

from __future__ import annotations

import threading
from typing import cast

import anthropic

from managed_agents.domain.events import JsonObject
from managed_agents.ports import Cancelled, CancelToken, ModelError, ModelErrorKind, ModelResponse, ModelUsage

_KIND_BY_ERROR_TYPE: dict[str, ModelErrorKind] = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limited",
    "api_error": "server",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
}


def _kind_for_status(status: int, error_type: str | None) -> ModelErrorKind:
    if error_type in _KIND_BY_ERROR_TYPE and status in (200, 500):
        return _KIND_BY_ERROR_TYPE[error_type]
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "server"
    if status in (401, 403):
        return "auth"
    return "invalid"


def _api_message(exc: anthropic.APIStatusError) -> tuple[str | None, str]:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    etype = error.get("type")
    message = error.get("message")
    return (str(etype) if etype else None, str(message) if message else exc.message)


class AnthropicMessagesModel:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        client: anthropic.Anthropic | None = None,
    ) -> None:
        self._client = client
        self._options = {"api_key": api_key, "base_url": base_url, "timeout": timeout}
        self._lock = threading.Lock()

    @property
    def client(self) -> anthropic.Anthropic:
        with self._lock:
            if self._client is None:
                self._client = anthropic.Anthropic(
                    api_key=cast(str | None, self._options["api_key"]) or "missing-api-key",
                    base_url=cast(str | None, self._options["base_url"]),
                    timeout=cast(float, self._options["timeout"]),
                    max_retries=0,
                )
            return self._client

    def stream_message(self, request: JsonObject, *, cancel: CancelToken | None = None) -> ModelResponse:
        if cancel is None:
            return self._stream_message(request, None)
        if cancel.cancelled:
            raise Cancelled()
        # The SDK blocks in `messages.stream(...).__enter__` until the response headers arrive, before the stream
        # exists and can be closed, so a cancel during that wait would go unnoticed. Run the request on a helper
        # thread and return as soon as either it finishes or the token is cancelled; a late result is discarded
        # (the helper closes the stream as soon as it gets one, because the token is already cancelled).
        done = threading.Event()
        box: dict[str, object] = {}

        def work() -> None:
            try:
                box["result"] = self._stream_message(request, cancel)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
            finally:
                done.set()

        cancel.on_cancel(done.set)
        threading.Thread(target=work, name="model-request", daemon=True).start()
        done.wait()
        if cancel.cancelled:
            raise Cancelled()
        if "error" in box:
            raise cast(BaseException, box["error"])
        return cast(ModelResponse, box["result"])

    def _stream_message(self, request: JsonObject, cancel: CancelToken | None) -> ModelResponse:
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        try:
            with self.client.messages.stream(**request) as stream:  # type: ignore[arg-type]
                if cancel is not None:
                    cancel.on_cancel(stream.close)
                for _event in stream:
                    if cancel is not None and cancel.cancelled:
                        raise Cancelled()
                message = stream.get_final_message()
        except Cancelled:
            raise
        except anthropic.APIStatusError as exc:
            etype, text = _api_message(exc)
            raise ModelError(_kind_for_status(exc.status_code, etype), text, status=exc.status_code) from exc
        except anthropic.APITimeoutError as exc:
            raise ModelError("timeout", "the model did not answer in time") from exc
        except Exception as exc:
            if cancel is not None and cancel.cancelled:
                raise Cancelled() from exc
            if isinstance(exc, anthropic.APIConnectionError):
                raise ModelError("connection", f"could not reach the model endpoint: {exc}") from exc
            raise
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        usage = message.usage
        stop_details = getattr(message, "stop_details", None)
        return ModelResponse(
            content=[cast(JsonObject, b.model_dump(mode="json", exclude_none=True)) for b in message.content],
            stop_reason=message.stop_reason,
            usage=ModelUsage(
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            ),
            model=message.model,
            stop_details=cast(JsonObject, stop_details.model_dump(mode="json")) if stop_details is not None else None,
        )
