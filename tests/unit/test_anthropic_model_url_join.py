"""The adapter's async client joins the base URL and a path once per path, and joins again after `base_url` changes."""

from __future__ import annotations

from managed_agents.adapters.anthropic_model import AnthropicMessagesModel


def test_the_join_is_kept_per_path_and_made_again_for_a_new_base_url() -> None:
    # Given the adapter's async client
    client = AnthropicMessagesModel(api_key="k", base_url="http://127.0.0.1:9/prefix", timeout=5)._new_async_client()
    # When the same path is prepared twice, Then the second is the first's URL, as the SDK joins it
    first = client._prepare_url("/v1/messages")
    assert client._prepare_url("/v1/messages") is first
    assert str(first) == "http://127.0.0.1:9/prefix/v1/messages"
    assert str(client._prepare_url("/v1/messages/count_tokens")) == "http://127.0.0.1:9/prefix/v1/messages/count_tokens"
    # When the base URL is assigned, Then the path is joined with the new one
    client.base_url = "http://127.0.0.1:10/other"
    assert str(client._prepare_url("/v1/messages")) == "http://127.0.0.1:10/other/v1/messages"
