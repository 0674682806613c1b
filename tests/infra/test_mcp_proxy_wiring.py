"""Who reaches the MCP proxy Lambda, and what it may do (the vault invariants are in test_stack_security_invariants)."""

from __future__ import annotations

import pytest

from managed_agents.settings import (
    EVENTS_TABLE_ENV,
    MCP_PROXY_FUNCTION_ENV,
    VAULT_KMS_KEY_ARN_ENV,
    VAULT_SECRET_PREFIX_ENV,
)
from stacks.asl import logical_id
from tests.infra.conftest import Synth
from tests.infra.test_stack_security_invariants import (
    API,
    MCP_PROXY,
    MODEL_TURN,
    VAULT_SECRETS,
    _allows,
    _as_list,
    _function,
    _role_of,
    _role_statements,
    _statements,
    _text,
)

pytestmark = pytest.mark.slow


def test_only_the_api_and_model_turn_invoke_the_mcp_proxy_through_its_alias(default_synth: Synth) -> None:
    # Given the MCP proxy's live alias
    alias = f"<{logical_id(default_synth.template, 'McpProxy/Live/Resource')}>"
    # Then exactly the API and ModelTurn roles may invoke it, and only through the alias
    invokers = {
        lid
        for lid, st in _statements(default_synth)
        if st["Effect"] == "Allow"
        and "lambda:InvokeFunction" in _as_list(st["Action"])
        and any(_text(r) == alias for r in _as_list(st["Resource"]))
    }
    roles = {
        role["Ref"]
        for lid in invokers
        for role in default_synth.template["Resources"][lid]["Properties"].get("Roles", [])
    }
    assert roles == {_role_of(default_synth, API), _role_of(default_synth, MODEL_TURN)}
    # And both know it by that alias
    for handler in (API, MODEL_TURN):
        _, fn = _function(default_synth, handler)
        assert _text(fn["Properties"]["Environment"]["Variables"][MCP_PROXY_FUNCTION_ENV]) == alias


def test_the_mcp_proxy_reads_and_rotates_vault_secrets_and_records_token_expiry(default_synth: Synth) -> None:
    # Given the MCP proxy's role and environment
    _, fn = _function(default_synth, MCP_PROXY)
    statements = _role_statements(default_synth, _role_of(default_synth, MCP_PROXY))
    env = fn["Properties"]["Environment"]["Variables"]
    # Then it reads vault secrets and writes their values (rotated tokens, and new and updated credentials for the
    # API), but deletes none (the API does, which needs no key)
    assert env[VAULT_SECRET_PREFIX_ENV] == "managed-agents/vault/"
    assert _allows(statements, "secretsmanager:GetSecretValue", VAULT_SECRETS)
    assert _allows(statements, "secretsmanager:PutSecretValue", VAULT_SECRETS)
    assert not _allows(statements, "secretsmanager:DeleteSecret", VAULT_SECRETS)
    # And it creates them only with the vault key, which its environment names and its role may use
    key_lid = logical_id(default_synth.template, "Secrets/VaultKey/Resource")
    assert _text(env[VAULT_KMS_KEY_ARN_ENV]) == f"<{key_lid}.Arn>"
    (create,) = [st for st in statements if "secretsmanager:CreateSecret" in _as_list(st["Action"])]
    assert create["Effect"] == "Allow" and VAULT_SECRETS in _text(create["Resource"])
    assert create["Condition"] == {"StringEquals": {"secretsmanager:KmsKeyArn": {"Fn::GetAtt": [key_lid, "Arn"]}}}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert _allows(statements, action, f"<{key_lid}.Arn>"), action
    # And it may update the credential record (a refresh records the new expiry), on the resources table
    table = logical_id(default_synth.template, "Data/ResourcesTable/Resource")
    assert _allows(statements, "dynamodb:UpdateItem", f"<{table}.Arn>")
    # And on the events table it may only put items (a failed refresh's vault_credential.refresh_failed webhook item,
    # the outbox its environment names): it reads no session's log
    events = logical_id(default_synth.template, "Data/EventsTable/Resource")
    on_events = [st for st in statements if any("Events" in _text(r) for r in _as_list(st["Resource"]))]
    assert [(_as_list(st["Action"]), _text(st["Resource"])) for st in on_events] == [
        (["dynamodb:PutItem"], f"<{events}.Arn>")
    ]
    assert _text(env[EVENTS_TABLE_ENV]) == f"<{events}>"
