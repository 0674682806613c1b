"""Security invariants of the synthesized stack (moto enforces no IAM, so they are checked on the template)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk import assertions

from managed_agents.adapters.aws import ecs_sandbox_provisioner
from managed_agents.adapters.aws.dynamodb_event_store import create_events_table
from managed_agents.adapters.aws.dynamodb_resource_store import create_resources_table
from managed_agents.settings import VAULT_KMS_KEY_ARN_ENV
from stacks.asl import logical_id, render, state_machine_definition
from stacks.config import SANDBOX_CONTAINER_NAME as SANDBOX_CONTAINER
from stacks.config import SANDBOX_INIT_CONTAINER_NAME as INIT_CONTAINER
from tests.infra.conftest import REPO_ROOT, Synth

pytestmark = pytest.mark.slow

VAULT_SECRETS = ":secret:managed-agents/vault/*"
# webhook signing secrets (api/webhooks): the API creates, writes and reads them; not vault secrets, not the vault key
WEBHOOK_SECRETS = ":secret:managed-agents/webhook/*"


# ----------------------------------------------------------------------------------------------------------- helpers
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    """A resource/condition value rendered with intrinsics shown as <LogicalId> / <LogicalId.Attr> / <AWS::Region>."""

    def resolve(node: Any) -> str:
        if "Ref" in node:
            return f"<{node['Ref']}>"
        if "Fn::GetAtt" in node:
            return "<" + ".".join(node["Fn::GetAtt"]) + ">"
        return json.dumps(node, sort_keys=True)

    return render(value, resolve) if isinstance(value, (str, dict)) else json.dumps(value, sort_keys=True)


def _statements(synth: Synth) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every permission statement in the template: IAM policies, inline role policies, key/bucket/queue policies."""
    for lid, res in synth.template["Resources"].items():
        props = res.get("Properties", {})
        docs: list[Any] = []
        if res["Type"] == "AWS::IAM::Policy":
            docs.append(props["PolicyDocument"])
        elif res["Type"] == "AWS::IAM::Role":
            docs.extend(p["PolicyDocument"] for p in props.get("Policies", []))
        elif res["Type"] == "AWS::KMS::Key":
            docs.append(props["KeyPolicy"])
        elif res["Type"] in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"):
            docs.append(props["PolicyDocument"])
        for doc in docs:
            for st in doc["Statement"]:
                yield lid, st


def _role_statements(synth: Synth, role_lid: str) -> list[dict[str, Any]]:
    out = []
    for _lid, res in synth.resources("AWS::IAM::Policy").items():
        if {"Ref": role_lid} in res["Properties"].get("Roles", []):
            out.extend(res["Properties"]["PolicyDocument"]["Statement"])
    role = synth.template["Resources"][role_lid]["Properties"]
    for policy in role.get("Policies", []):
        out.extend(policy["PolicyDocument"]["Statement"])
    return out


STREAM_FUNCTION_PATH = "/Api/StreamFunction/"


def _function(synth: Synth, handler: str, *, stream: bool = False) -> tuple[str, dict[str, Any]]:
    """The one function with `handler`; the API handler also runs the event-stream function (`stream=True`)."""
    hits = [
        (lid, r)
        for lid, r in synth.resources("AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == handler
        and (STREAM_FUNCTION_PATH in r.get("Metadata", {}).get("aws:cdk:path", "")) == stream
    ]
    assert len(hits) == 1, handler
    return hits[0]


def _role_of(synth: Synth, handler: str, *, stream: bool = False) -> str:
    _, fn = _function(synth, handler, stream=stream)
    return str(fn["Properties"]["Role"]["Fn::GetAtt"][0])


def _allows(statements: list[dict[str, Any]], action: str, resource_part: str) -> bool:
    return any(
        st["Effect"] == "Allow"
        and action in _as_list(st["Action"])
        and any(resource_part in _text(r) for r in _as_list(st["Resource"]))
        for st in statements
    )


MCP_PROXY = "functions.mcp_proxy.handler.handler"
API = "functions/api/run.sh"
MODEL_TURN = "functions.model_turn.handler.handler"
PROVISIONER = "functions.provisioner.handler.handler"


# ----------------------------------------------------------------------------------------------------------- sandbox
def test_sandbox_task_has_no_task_role_no_secrets_and_no_environment(default_synth: Synth) -> None:
    # Given the sandbox task definition
    _, task = default_synth.one("AWS::ECS::TaskDefinition")
    props = task["Properties"]
    # Then the container gets no AWS credentials and no secret from the task definition
    assert "TaskRoleArn" not in props
    for container in props["ContainerDefinitions"]:
        assert "Secrets" not in container and "Environment" not in container and "EnvironmentFiles" not in container
    assert props["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"
    assert (props["Cpu"], props["Memory"]) == ("1024", "2048")
    # And its execution role may only pull the image and write logs
    exec_role = props["ExecutionRoleArn"]["Fn::GetAtt"][0]
    actions = {a for st in _role_statements(default_synth, exec_role) for a in _as_list(st["Action"])}
    assert actions and all(a.startswith("ecr:") or a in ("logs:CreateLogStream", "logs:PutLogEvents") for a in actions)


def test_an_init_container_fills_the_task_volumes_before_the_sandbox_container_starts(default_synth: Synth) -> None:
    # Given the sandbox task definition
    _, task = default_synth.one("AWS::ECS::TaskDefinition")
    props = task["Properties"]
    containers = {c["Name"]: c for c in props["ContainerDefinitions"]}
    assert set(containers) == {SANDBOX_CONTAINER, INIT_CONTAINER}
    init, sandbox = containers[INIT_CONTAINER], containers[SANDBOX_CONTAINER]
    # Then the init container runs the materials program of the same image and may end (not essential)
    assert init["Image"] == sandbox["Image"] and init["Essential"] is False and sandbox["Essential"] is True
    assert init["EntryPoint"] == ["python", "/opt/sandbox/materials.py"]
    # And the sandbox container starts only once it exited 0
    assert sandbox["DependsOn"] == [{"ContainerName": INIT_CONTAINER, "Condition": "SUCCESS"}]
    # And both mount the two task volumes at the same paths (what init writes is what the sandbox sees)
    assert [v["Name"] for v in props["Volumes"]] == ["session", "workspace"]
    for container in (init, sandbox):
        mounts = {(m["SourceVolume"], m["ContainerPath"], m["ReadOnly"]) for m in container["MountPoints"]}
        assert mounts == {("session", "/mnt/session", False), ("workspace", "/workspace", False)}
    # And the provisioner overrides the containers the stack names
    assert (INIT_CONTAINER, SANDBOX_CONTAINER) == (ecs_sandbox_provisioner.INIT_CONTAINER, "sandbox")


def test_only_the_provisioner_runs_sandbox_tasks_and_passes_only_the_execution_role(default_synth: Synth) -> None:
    task_lid, task = default_synth.one("AWS::ECS::TaskDefinition")
    exec_role = task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    provisioner_role = _role_of(default_synth, PROVISIONER)
    scheduler_role = logical_id(default_synth.template, "Triggers/SchedulerRole/Resource")
    runners, passers = set(), set()
    for lid, st in _statements(default_synth):
        actions = _as_list(st["Action"])
        if "ecs:RunTask" in actions:
            runners.add(lid)
            assert [_text(r) for r in _as_list(st["Resource"])] == [f"<{task_lid}>"]
        if "iam:PassRole" in actions:
            if st["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}:
                # deployment schedules (stacks/managed_agents_stack.py): the schedule role, to Scheduler only
                assert [_text(r) for r in _as_list(st["Resource"])] == [f"<{scheduler_role}.Arn>"]
                continue
            passers.add(lid)
            assert [_text(r) for r in _as_list(st["Resource"])] == [f"<{exec_role}.Arn>"]
            assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    policies = default_synth.resources("AWS::IAM::Policy")
    assert runners == passers
    assert all(policies[p]["Properties"]["Roles"] == [{"Ref": provisioner_role}] for p in runners) and runners
    # And every ECS task action the provisioner's stop makes (ListTasks first) is granted, in the sandbox cluster only
    cluster_lid, _ = default_synth.one("AWS::ECS::Cluster")
    granted = set()
    for st in _role_statements(default_synth, provisioner_role):
        ecs_actions = {a for a in _as_list(st["Action"]) if a.startswith("ecs:") and a != "ecs:TagResource"}
        if ecs_actions:
            granted |= ecs_actions
            assert st["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster_lid, "Arn"]}}}
    assert granted == {"ecs:RunTask", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask"}


# ------------------------------------------------------------------------------------------------------------- vault
def test_only_the_mcp_proxy_may_read_vault_secrets_in_iam(default_synth: Synth) -> None:
    # Given every role's statements
    readers = set()
    for role_lid in default_synth.resources("AWS::IAM::Role"):
        if _allows(_role_statements(default_synth, role_lid), "secretsmanager:GetSecretValue", VAULT_SECRETS):
            readers.add(role_lid)
    # Then exactly one role may read vault secrets: the MCP proxy's
    assert readers == {_role_of(default_synth, MCP_PROXY)}
    # And no statement anywhere allows GetSecretValue on every secret
    for _, st in _statements(default_synth):
        if st["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in _as_list(st["Action"]):
            assert "*" not in [_text(r) for r in _as_list(st["Resource"])]


def test_vault_key_policy_denies_decrypt_to_every_principal_but_the_mcp_proxy(default_synth: Synth) -> None:
    # Given the vault key (the resource policy that covers every run-time-created vault secret)
    key_lid = logical_id(default_synth.template, "Secrets/VaultKey/Resource")
    policy = default_synth.template["Resources"][key_lid]["Properties"]["KeyPolicy"]["Statement"]
    mcp_role_arn = {"Fn::GetAtt": [_role_of(default_synth, MCP_PROXY), "Arn"]}
    # Then an explicit deny of decryption applies to anyone whose principal ARN is not the MCP proxy role
    denies = [st for st in policy if st["Effect"] == "Deny" and "kms:Decrypt" in _as_list(st["Action"])]
    assert len(denies) == 1
    assert denies[0]["Principal"] == {"AWS": "*"}
    assert denies[0]["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": mcp_role_arn}}
    assert "kms:ReEncryptFrom" in denies[0]["Action"]
    # And the only principal allowed to decrypt is that role, and only through Secrets Manager
    allows = [st for st in policy if st["Effect"] == "Allow" and "kms:Decrypt" in _as_list(st["Action"])]
    assert [st["Principal"] for st in allows] == [{"AWS": mcp_role_arn}]
    assert "kms:ViaService" in json.dumps(allows[0]["Condition"])
    # And the account root administers the key without being able to use it
    admin = next(st for st in policy if st.get("Sid") == "KeyAdministration")
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom"} & set(admin["Action"])


def test_the_api_lambda_can_neither_read_nor_write_vault_secrets_nor_use_the_vault_key(default_synth: Synth) -> None:
    # Given the API function's role, and the vault key with its key policy
    api_role = _role_of(default_synth, API)
    statements = _role_statements(default_synth, api_role)
    key_lid = logical_id(default_synth.template, "Secrets/VaultKey/Resource")
    key_policy = default_synth.template["Resources"][key_lid]["Properties"]["KeyPolicy"]["Statement"]
    api_role_arn = {"Fn::GetAtt": [api_role, "Arn"]}
    # Then no IAM statement allows it any kms action on the vault key (nor kms:Decrypt on any key)
    assert not any(
        st["Effect"] == "Allow"
        and any(a.startswith("kms:") for a in _as_list(st["Action"]))
        and any(key_lid in _text(r) or _text(r) == "*" for r in _as_list(st["Resource"]))
        for st in statements
    )
    assert not any(st["Effect"] == "Allow" and "kms:Decrypt" in _as_list(st["Action"]) for st in statements)
    # And the key policy names it nowhere (only the MCP proxy may use the key; the API is in the deny-all-but-proxy)
    assert api_role_arn not in [st.get("Principal", {}).get("AWS") for st in key_policy]
    # And it may not create, write or read a vault secret: no allow, and an explicit deny of each
    admin_key = f"<{logical_id(default_synth.template, 'Secrets/AdminApiKey/Resource')}>"
    for action in ("CreateSecret", "PutSecretValue", "UpdateSecret", "GetSecretValue"):
        allowed = [
            _text(r)
            for st in statements
            if st["Effect"] == "Allow" and f"secretsmanager:{action}" in _as_list(st["Action"])
            for r in _as_list(st["Resource"])
        ]
        # (the secrets it reads are the admin key and webhook signing secrets; it writes webhook signing secrets only)
        others = [r for r in allowed if not r.endswith(WEBHOOK_SECRETS)]
        assert others == ([admin_key] if action == "GetSecretValue" else []), (action, allowed)
        assert not any("managed-agents/vault" in r for r in allowed), (action, allowed)
        assert any(
            st["Effect"] == "Deny"
            and f"secretsmanager:{action}" in _as_list(st["Action"])
            and VAULT_SECRETS in _text(st["Resource"])
            for st in statements
        ), action
    # But it deletes them itself (DeleteSecret and DescribeSecret use no key), as aws_cdk.assertions sees it too
    template = assertions.Template.from_json(default_synth.template)
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": [{"Ref": api_role}],
            "PolicyDocument": {
                "Statement": assertions.Match.array_with(
                    [
                        assertions.Match.object_like(
                            {
                                "Sid": "DeleteVaultSecrets",
                                "Effect": "Allow",
                                "Action": ["secretsmanager:DeleteSecret", "secretsmanager:DescribeSecret"],
                            }
                        )
                    ]
                )
            },
        },
    )
    # And its function is not told the vault key (it has no use for it)
    _, fn = _function(default_synth, API)
    assert VAULT_KMS_KEY_ARN_ENV not in fn["Properties"]["Environment"]["Variables"]
    # The model-turn Lambda (the other caller of the proxy) is denied reads too
    assert any(
        st["Effect"] == "Deny" and "secretsmanager:GetSecretValue" in _as_list(st["Action"])
        for st in _role_statements(default_synth, _role_of(default_synth, MODEL_TURN))
    )


def test_no_statement_grants_a_wildcard_action(default_synth: Synth) -> None:
    # Given every permission statement (IAM, key, bucket and queue policies)
    offenders: list[tuple[str, object]] = []
    tls_denies = 0
    for lid, st in _statements(default_synth):
        wildcard = [a for a in _as_list(st.get("Action", [])) if a == "*" or a.endswith(":*")]
        if "NotAction" in st:
            offenders.append((lid, "NotAction"))
        if not wildcard:
            continue
        if st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
            tls_denies += 1  # the SSL-only policies: deny every action over plain HTTP
        else:
            offenders.append((lid, wildcard))
    # Then no statement allows every action of a service; the only wildcards are the TLS-only denies
    assert offenders == []
    # the spill and files buckets, their access-log bucket, the triggers' dead-letter queue, the webhook delivery
    # queue and its dead-letter queue
    assert tls_denies == 6


# ------------------------------------------------------------------------------------------------------------ tables
def _captured_create_table(create: Any) -> dict[str, Any]:
    calls: list[dict[str, Any]] = []

    class Client:
        def create_table(self, **kwargs: Any) -> None:
            calls.append(kwargs)

        def get_waiter(self, _name: str) -> Any:
            return type("W", (), {"wait": staticmethod(lambda **_: None)})()

    create(Client(), "t")
    return calls[0]


def _normalized(table: dict[str, Any]) -> dict[str, Any]:
    def gsi(g: dict[str, Any]) -> tuple[str, str, str, list[str]]:
        projection = g["Projection"]
        keys = json.dumps(g["KeySchema"], sort_keys=True)
        return (g["IndexName"], keys, projection["ProjectionType"], sorted(projection.get("NonKeyAttributes", [])))

    return {
        "keys": table["KeySchema"],
        "attrs": sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]),
        "gsis": sorted(gsi(g) for g in table.get("GlobalSecondaryIndexes", [])),
        "billing": table["BillingMode"],
    }


def test_tables_are_on_demand_encrypted_with_pitr_and_match_the_adapters_schemas(default_synth: Synth) -> None:
    tables = default_synth.resources("AWS::DynamoDB::Table")
    assert len(tables) == 2
    for table in tables.values():
        props = table["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["DeletionProtectionEnabled"] is True and table["DeletionPolicy"] == "Retain"
    # And each table has exactly the schema its adapter creates (tests and moto use the adapters' create functions)
    events = tables[logical_id(default_synth.template, "Data/EventsTable/Resource")]["Properties"]
    resources = tables[logical_id(default_synth.template, "Data/ResourcesTable/Resource")]["Properties"]
    assert _normalized(events) == _normalized(_captured_create_table(create_events_table))
    assert _normalized(resources) == _normalized(_captured_create_table(create_resources_table))
    assert resources["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize("bucket", ["SpillBucket", "FilesBucket"])
def test_data_buckets_are_private_encrypted_ssl_only_and_logged(default_synth: Synth, bucket: str) -> None:
    bucket_lid = logical_id(default_synth.template, f"Data/{bucket}/Resource")
    props = default_synth.template["Resources"][bucket_lid]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in default_synth.resources("AWS::S3::BucketPolicy").values()
        if r["Properties"]["Bucket"] == {"Ref": bucket_lid}
    ]
    assert any(
        st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for st in policies[0]
    )


def test_files_bucket_objects_are_for_the_api_and_model_turn_only(default_synth: Synth) -> None:
    # Given the files bucket's object ARN as policies name it
    template = default_synth.template
    bucket_lid = logical_id(template, "Data/FilesBucket/Resource")
    objects = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_lid, "Arn"]}, "/*"]]}
    granted: dict[str, set[str]] = {}
    for policy in default_synth.resources("AWS::IAM::Policy").values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if st.get("Resource") == objects and st["Effect"] == "Allow":
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                for role in policy["Properties"]["Roles"]:
                    granted.setdefault(role["Ref"], set()).update(actions)
    # Then the API reads, writes and deletes blobs, ModelTurn reads them (file blocks), and no one else touches them
    api_role = logical_id(template, "Api/ApiFunction/Role/Resource")
    turn_role = logical_id(template, "ModelTurn/Role/Resource")
    assert granted == {
        api_role: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        turn_role: {"s3:GetObject"},
    }
    # And every function that composes the runtime (its event store names the spill bucket) names that one bucket
    # (never another: an ungranted one fails loudly on access instead of silently reading a different bucket)
    functions = default_synth.resources("AWS::Lambda::Function").values()
    runtime_envs = [
        f["Properties"]["Environment"]["Variables"]
        for f in functions
        if "MANAGED_AGENTS_SPILL_BUCKET" in f.get("Properties", {}).get("Environment", {}).get("Variables", {})
    ]
    assert len(runtime_envs) >= 6
    assert [env.get("MANAGED_AGENTS_FILES_BUCKET") for env in runtime_envs] == [{"Ref": bucket_lid}] * len(runtime_envs)


# --------------------------------------------------------------------------------------------------------------- API
def test_api_is_regional_streamed_and_its_stage_logs_access(default_synth: Synth) -> None:
    _, api = default_synth.one("AWS::ApiGateway::RestApi")
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    _, stage = default_synth.one("AWS::ApiGateway::Stage")
    log_setting = stage["Properties"]["AccessLogSetting"]
    assert "Fn::GetAtt" in log_setting["DestinationArn"] and "$context.requestId" in log_setting["Format"]
    assert stage["Properties"]["TracingEnabled"] is True
    assert stage["Properties"]["MethodSettings"][0]["LoggingLevel"] == "ERROR"
    # Every method streams its Lambda's response through the live alias: the API function's, and the event-stream
    # function's for GET .../events/stream
    alias_lid = logical_id(default_synth.template, "Api/ApiFunction/Live/Resource")
    stream_alias_lid = logical_id(default_synth.template, "Api/StreamFunction/Live/Resource")
    methods = default_synth.resources("AWS::ApiGateway::Method")
    assert len(methods) == 3  # ANY /, ANY /{proxy+} and GET /v1/sessions/{session_id}/events/stream
    for method in methods.values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY" and integration["ResponseTransferMode"] == "STREAM"
        uri = _text(integration["Uri"])
        assert "/2021-11-15/functions/" in uri and uri.endswith("/response-streaming-invocations")
        stream = method["Metadata"]["aws:cdk:path"].endswith("/events/stream/GET/Resource")
        assert f"<{stream_alias_lid if stream else alias_lid}>" in uri
        assert method["Properties"]["AuthorizationType"] == "NONE"  # the app authenticates (API keys)


def test_api_lambda_runs_the_asgi_app_behind_lambda_web_adapter(default_synth: Synth) -> None:
    _, fn = _function(default_synth, API)
    props = fn["Properties"]
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap" and env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert ":layer:LambdaAdapterLayerArm64:" in _text(props["Layers"][0])
    assert "MANAGED_AGENTS_STATE_MACHINE_ARN" in env and "MODEL_API_KEY_SECRET_ARN" not in env
    # Event streams end cleanly before the 15-minute stream cap (the SDK then re-lists and dedupes by id)
    assert env["MANAGED_AGENTS_SSE_MAX_SECONDS"] == "840" and props["Timeout"] == 900
    # And the handler script exists, is executable and starts the app LWA forwards to
    run_sh = REPO_ROOT / API
    assert os.access(run_sh, os.X_OK)
    assert "uvicorn managed_agents.api.lambda_app:app" in run_sh.read_text()
    assert '--port "${AWS_LWA_PORT:-8080}"' in run_sh.read_text() and env["AWS_LWA_PORT"] == "8080"


def test_python_lambdas_are_arm64_with_snapstart_where_users_wait_and_invoked_through_aliases(
    default_synth: Synth,
) -> None:
    functions = default_synth.resources("AWS::Lambda::Function")
    # API, event streams, ModelTurn, ReportFailure, ToolWait, MCP proxy, provisioner, triggers, work reaper, webhook
    # relay and webhook deliver
    assert len(functions) == 11
    snap = set()
    for lid, fn in functions.items():
        props = fn["Properties"]
        assert props["Architectures"] == ["arm64"] and props["Runtime"] == "python3.13"
        assert props["TracingConfig"] == {"Mode": "Active"}
        if props.get("SnapStart") == {"ApplyOn": "PublishedVersions"}:
            snap.add(lid)
    # SnapStart (a snapshot billed all month per version) on the API and ModelTurn only: users wait for their inits
    assert snap == {_function(default_synth, API)[0], logical_id(default_synth.template, "ModelTurn/Function/Resource")}
    # And a new version replaces the previous one (deleted, so no superseded snapshot goes on being billed)
    versions = default_synth.resources("AWS::Lambda::Version")
    assert len(versions) == len(functions)
    assert {v.get("DeletionPolicy", "Delete") for v in versions.values()} == {"Delete"}
    # Every Lambda the state machine calls is a live alias (SnapStart runs published versions only)
    aliases = set(default_synth.resources("AWS::Lambda::Alias"))
    definition = default_synth.resources("AWS::StepFunctions::StateMachine")
    text = json.dumps(next(iter(definition.values()))["Properties"]["DefinitionString"])
    referenced = {lid for lid in default_synth.template["Resources"] if f'"Ref": "{lid}"' in text}
    lambda_refs = {
        lid for lid in referenced if default_synth.template["Resources"][lid]["Type"].startswith("AWS::Lambda")
    }
    assert lambda_refs and lambda_refs <= aliases


# ------------------------------------------------------------------------------------------------------ session loop
def _definition(synth: Synth) -> dict[str, Any]:
    refs = {
        lid: f"arn:aws:lambda:us-east-1:123456789012:function:{lid}" for lid in synth.resources("AWS::Lambda::Alias")
    }
    return state_machine_definition(synth.template, refs=refs)


def test_session_run_is_a_standard_logged_traced_state_machine(default_synth: Synth) -> None:
    _, sm = default_synth.one("AWS::StepFunctions::StateMachine")
    props = sm["Properties"]
    assert props["StateMachineType"] == "STANDARD" and props["StateMachineName"] == "managed-agents-session-run"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_session_run_definition_follows_the_model_turn_contract(default_synth: Synth) -> None:
    states = _definition(default_synth)["States"]
    turn = states["ModelTurn"]
    # ModelTurn gets pointers only: the session, the turn count, the run's owner token and the turn limit
    assert turn["Parameters"]["Payload"] == {
        "session_id.$": "$.session_id",
        "turns.$": "$.turns",
        "execution.$": "$$.Execution.Input.execution",
        "turns_per_execution": 50,
    }
    assert turn["OutputPath"] == "$.Payload" and turn["Next"] == "NextStep"
    assert "Lambda.ServiceException" in turn["Retry"][0]["ErrorEquals"]
    assert turn["Catch"][-1] == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReportFailure"}
    # The Choice routes every outcome
    choices = states["NextStep"]["Choices"]
    # (a turn that runs again continues as the execution it names, which owns the run already)
    assert choices[0]["Next"] == "ContinueAsNew" and choices[0]["And"] == [
        {"Variable": "$.outcome", "StringEquals": "run_again"},
        {"Variable": "$.continue_as", "IsString": True},
    ]
    routes = {c["StringEquals"]: c["Next"] for c in choices if "StringEquals" in c}
    assert routes == {
        "run_again": "ModelTurn",
        "retry_after": "RetryWait",
        "wait_for_tools": "ToolWait",
        "parked": "Parked",
    }
    assert states["NextStep"]["Default"] == "UnknownOutcome"
    assert states["RetryWait"] == {
        **states["RetryWait"],
        "Type": "Wait",
        "SecondsPath": "$.wait_seconds",
        "Next": "ModelTurn",
    }
    # ToolWait waits for the task token, times out after wait_seconds, and a timeout goes back to ModelTurn
    wait = states["ToolWait"]
    assert wait["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert wait["Parameters"]["Payload"] == {"session_id.$": "$.session_id", "task_token.$": "$$.Task.Token"}
    assert wait["TimeoutSecondsPath"] == "$.wait_seconds" and wait["ResultPath"] is None
    assert wait["Catch"][0]["ErrorEquals"] == ["States.Timeout", "States.HeartbeatTimeout"]
    assert wait["Catch"][0]["Next"] == "ModelTurn" and wait["Next"] == "ModelTurn"
    # Continue-as-new starts this same state machine, as the execution ModelTurn handed the run to (its owner token)
    # with a fresh turn count, then succeeds
    cont = states["ContinueAsNew"]
    assert cont["Resource"].endswith(":states:::states:startExecution")
    assert cont["Parameters"]["StateMachineArn"].endswith(":stateMachine:managed-agents-session-run")
    assert cont["Parameters"]["Name.$"] == "$.continue_as"
    assert cont["Parameters"]["Input"] == {"session_id.$": "$.session_id", "turns": 0, "execution.$": "$.continue_as"}
    assert states[cont["Next"]]["Type"] == "Succeed" and states["Parked"]["Type"] == "Succeed"
    # Failures are reported as session.error, then the execution fails
    report = states["ReportFailure"]
    assert report["Parameters"]["Payload"] == {
        "session_id.$": "$.session_id",
        "error.$": "$.error",
        "execution.$": "$$.Execution.Input.execution",  # the failed run's owner, released by ReportFailure
    }
    assert report["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"


def test_state_machine_role_invokes_only_its_three_aliases_and_starts_only_itself(default_synth: Synth) -> None:
    _, sm = default_synth.one("AWS::StepFunctions::StateMachine")
    role = sm["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = _role_statements(default_synth, role)
    invoked = {
        _text(r).split(">")[0].lstrip("<")
        for st in statements
        if "lambda:InvokeFunction" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    }
    expected = {
        logical_id(default_synth.template, f"{n}/Live/Resource") for n in ("ModelTurn", "ReportFailure", "ToolWait")
    }
    assert invoked == expected
    starts = [st for st in statements if "states:StartExecution" in _as_list(st["Action"])]
    assert [_text(r) for st in starts for r in _as_list(st["Resource"])] == [
        "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:managed-agents-session-run"
    ]


# ---------------------------------------------------------------------------------------------------------- triggers
def test_events_and_schedules_start_sessions_through_the_triggers_alias(default_synth: Synth) -> None:
    rule = default_synth.template["Resources"][logical_id(default_synth.template, "Triggers/StartSessionRule/Resource")]
    assert rule["Properties"]["EventPattern"] == {"detail-type": ["StartSession"]}
    target = rule["Properties"]["Targets"][0]
    assert target["Arn"] == {"Ref": logical_id(default_synth.template, "TriggersFunction/Live/Resource")}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    role_lid = logical_id(default_synth.template, "Triggers/SchedulerRole/Resource")
    trust = default_synth.template["Resources"][role_lid]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert set(trust["Condition"]) == {"StringEquals", "ArnLike"}


# ------------------------------------------------------------------------------------------------------- memory sizes
def test_model_turn_is_sized_from_its_measured_peak(default_synth: Synth) -> None:
    # Given ModelTurn, which mostly waits for the model's stream (its peak RSS: ~128 MB, bench/lambda_cold_path.py)
    props = _function(default_synth, MODEL_TURN)[1]["Properties"]
    # Then it has that with half again of headroom, not the API's size (GB-seconds of waiting are its cost)
    assert props["MemorySize"] == 192 < _function(default_synth, API)[1]["Properties"]["MemorySize"]


# ----------------------------------------------------------------------------------------------------- event streams
def test_event_streams_have_their_own_small_read_only_function(default_synth: Synth) -> None:
    # Given the event-stream function and the API's resources
    lid, fn = _function(default_synth, API, stream=True)
    props = fn["Properties"]
    statements = _role_statements(default_synth, _role_of(default_synth, API, stream=True))
    # Then it runs the same app with less memory than the API function
    assert props["MemorySize"] == 128 < _function(default_synth, API)[1]["Properties"]["MemorySize"]
    env = props["Environment"]["Variables"]
    assert "MANAGED_AGENTS_STATE_MACHINE_ARN" not in env and "MANAGED_AGENTS_ADMIN_KEY_SECRET_ARN" not in env
    # And its role reads the log and records, and writes, starts or decrypts nothing
    allowed = {a for st in statements if st["Effect"] == "Allow" for a in _as_list(st["Action"])}
    assert {"dynamodb:Query", "dynamodb:GetItem", "s3:GetObject"} <= allowed
    writes = {
        a
        for a in allowed
        if a.startswith(("dynamodb:", "s3:")) and a.split(":")[1].startswith(("Put", "Update", "Delete", "BatchWrite"))
    }
    assert writes == set(), writes
    assert not any(a.startswith(("states:", "secretsmanager:", "kms:", "lambda:")) for a in allowed), allowed
    # And API Gateway routes GET .../events/stream to it, streamed, and everything else to the API function
    resources = default_synth.resources("AWS::ApiGateway::Resource")
    stream_lid = next(r for r, res in resources.items() if res["Properties"]["PathPart"] == "stream")
    methods = [
        m["Properties"]
        for m in default_synth.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["ResourceId"] == {"Ref": stream_lid}
    ]
    assert [m["HttpMethod"] for m in methods] == ["GET"]
    integration = methods[0]["Integration"]
    assert integration["ResponseTransferMode"] == "STREAM"
    stream_lids = {
        r
        for r, res in default_synth.template["Resources"].items()
        if STREAM_FUNCTION_PATH in res.get("Metadata", {}).get("aws:cdk:path", "")
    }
    assert lid in stream_lids and any(s in json.dumps(integration["Uri"]) for s in stream_lids)
