"""PlatformConfig: context parsing and validation (no synthesis)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from stacks.config import ConfigError, PlatformConfig
from tests.infra.conftest import JSII_ENV


def _from(context: dict[str, object]) -> PlatformConfig:
    os.environ.update(JSII_ENV)
    import aws_cdk as cdk

    return PlatformConfig.from_context(cdk.App(context=context).node)


def test_defaults_need_no_context() -> None:
    config = _from({})
    assert config == PlatformConfig()
    assert (config.prefix, config.max_turns_per_execution, config.sandbox_networking) == (
        "managed-agents",
        50,
        "unrestricted",
    )


def test_cli_strings_are_parsed_to_the_field_types() -> None:
    config = _from({"maxTurnsPerExecution": "12", "snapStart": "false", "harness": '{"max_tokens": 4096}'})
    assert config.max_turns_per_execution == 12 and config.snap_start is False
    assert config.harness_environment() == {"MANAGED_AGENTS_MAX_TOKENS": "4096"}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"prefix": "Bad_Prefix"}, "prefix"),
        ({"logRetentionDays": 31}, "logRetentionDays"),
        ({"sandboxNetworking": "open"}, "sandboxNetworking"),
        ({"sandboxCpu": 1024, "sandboxMemoryMb": 1024}, "Fargate size"),
        ({"harness": {"max_tokns": 1}}, "unknown settings"),
        ({"maxTurnsPerExecution": "many"}, "not an integer"),
        ({"snapStart": "maybe"}, "not a boolean"),
        ({"pythonRuntime": "3.11"}, "SnapStart"),
    ],
)
def test_invalid_context_is_rejected_with_the_key_named(context: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _from(context)


def test_harness_values_are_checked_with_the_runtime_bounds() -> None:
    with pytest.raises(ValidationError):
        PlatformConfig(harness={"model_max_attempts": 0})
