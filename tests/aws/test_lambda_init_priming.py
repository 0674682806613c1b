"""SnapStart priming: an ahead-of-time init builds the deps and their DynamoDB client; an on-demand init does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from managed_agents.adapters.aws.dynamodb_event_store import DynamoDbEventStore
from managed_agents.adapters.aws.dynamodb_resource_store import DynamoDbResourceStore
from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.aws_runtime import lambda_deps, prime_lambda_deps
from managed_agents.lambda_init import INIT_TYPE_ENV, init_runs_ahead
from managed_agents.settings import EVENTS_TABLE_ENV, RESOURCES_TABLE_ENV, SPILL_BUCKET_ENV


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        RESOURCES_TABLE_ENV: "resources",
        EVENTS_TABLE_ENV: "events",
        SPILL_BUCKET_ENV: "spill",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    lambda_deps.cache_clear()
    yield monkeypatch
    lambda_deps.cache_clear()


@pytest.mark.parametrize("init_type", ["on-demand", None])
def test_an_on_demand_init_primes_nothing(lambda_env: pytest.MonkeyPatch, init_type: str | None) -> None:
    if init_type is None:
        lambda_env.delenv(INIT_TYPE_ENV, raising=False)
    else:
        lambda_env.setenv(INIT_TYPE_ENV, init_type)
    assert not init_runs_ahead()
    prime_lambda_deps(model_sdk=True)
    assert lambda_deps.cache_info().currsize == 0  # the first invocation builds them


@pytest.mark.parametrize("init_type", ["snap-start", "provisioned-concurrency"])
def test_an_ahead_of_time_init_builds_the_deps_and_their_dynamodb_clients(
    lambda_env: pytest.MonkeyPatch, init_type: str
) -> None:
    lambda_env.setenv(INIT_TYPE_ENV, init_type)
    prime_lambda_deps()
    assert lambda_deps.cache_info().currsize == 1
    rt = lambda_deps().runtime
    assert isinstance(rt.events, PublishingEventStore) and isinstance(rt.events.inner, DynamoDbEventStore)
    assert isinstance(rt.resources, DynamoDbResourceStore)
    # the clients exist (created without any request: no AWS endpoint is reachable here)
    assert rt.events._ddb is not None and rt.resources._ddb is not None
    # and the harness (the model key read) is left to the first invocation: the snapshot holds no secret
    assert lambda_deps()._harness is None
