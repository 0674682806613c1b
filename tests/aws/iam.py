"""IAM enforced in moto with the synthesized policies, one role per function (testing.md, "What moto cannot see").

moto checks IAM when asked (`INITIAL_NO_AUTH_ACTION_COUNT` = 0): every request must be signed by a known access key
whose policies allow the action. `IamEnforcement` gives each principal of the stack its own moto role holding the
actions its synthesized role is allowed (the Allow statements of the template's policies attached to it), and makes
each of our handlers sign with the credentials of its function's role:

* the principal is a ContextVar (`PRINCIPAL`), set by whoever runs a function in-process: the Lambda dispatch of the
  platform (tests/aws/platform.py) around each handler, the API's ASGI wrapper per request (the event-stream route
  is the StreamFunction), the state machine's execution threads (the state machine's own role, which invokes the
  task Lambdas and starts continuations); threads a handler starts inherit it;
* `botocore.auth.SigV4Auth.add_auth` signs with that principal's credentials (no principal: an admin user, for the
  test's own setup and inspection);
* moto's action check is wrapped to map API operations to the IAM actions AWS checks for them (`Invoke` is
  `lambda:InvokeFunction`; a TransactWriteItems needs the actions of its items) and to record every check.

moto matches resources coarsely, so the check is at action level: each role's statements with resources `*` and no
conditions. Deny statements are left out (with resources `*` a Deny of vault secrets would deny every secret);
template assertions check them (tests/infra/test_stack_security_invariants.py). What no scenario can exercise here
(the Lambda runtime's log writes, X-Ray, Lambda's own use of a destination) is listed in `NOT_OUR_CALLS`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.credentials import Credentials
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMPolicy, IAMRequestBase, PermissionResult
from moto.iam.models import iam_backends
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.sts.models import sts_backends

from stacks.asl import logical_id

__all__ = [
    "NOT_OUR_CALLS",
    "PRINCIPAL",
    "PRINCIPALS",
    "Check",
    "IamEnforcement",
    "RolePolicy",
    "acting_as",
    "permits",
    "role_policies",
]

PRINCIPAL: ContextVar[str | None] = ContextVar("iam_principal", default=None)

# principal -> the CDK path (suffix) of its role in the synthesized template
PRINCIPALS: Mapping[str, str] = {
    "Api": "Api/ApiFunction/Role/Resource",
    "Stream": "Api/StreamFunction/Role/Resource",
    "ModelTurn": "ModelTurn/Role/Resource",
    "ReportFailure": "ReportFailure/Role/Resource",
    "ToolWait": "ToolWait/Role/Resource",
    "McpProxy": "McpProxy/Role/Resource",
    "Provisioner": "Provisioner/Role/Resource",
    "Triggers": "TriggersFunction/Role/Resource",
    "Reaper": "Reaper/Role/Resource",
    "WebhookRelay": "WebhookRelay/Role/Resource",
    "WebhookDeliver": "WebhookDeliver/Role/Resource",
    "StateMachine": "SessionLoop/StateMachine/Role/Resource",
}

# Granted actions our code never calls, per principal ("*": every principal), and who does.
NOT_OUR_CALLS: Mapping[str, Mapping[str, str]] = {
    "*": {
        "logs:CreateLogStream": "the Lambda runtime writes the function's own log group",
        "logs:PutLogEvents": "the Lambda runtime writes the function's own log group",
        "xray:PutTraceSegments": "active tracing: the Lambda service's X-Ray daemon",
        "xray:PutTelemetryRecords": "active tracing: the Lambda service's X-Ray daemon",
    },
    "StateMachine": {
        "logs:CreateLogDelivery": "Step Functions delivers the execution logs",
        "logs:GetLogDelivery": "Step Functions delivers the execution logs",
        "logs:UpdateLogDelivery": "Step Functions delivers the execution logs",
        "logs:DeleteLogDelivery": "Step Functions delivers the execution logs",
        "logs:ListLogDeliveries": "Step Functions delivers the execution logs",
        "logs:PutResourcePolicy": "Step Functions delivers the execution logs",
        "logs:DescribeResourcePolicies": "Step Functions delivers the execution logs",
        "logs:DescribeLogGroups": "Step Functions delivers the execution logs",
        "xray:GetSamplingRules": "Step Functions' X-Ray tracing",
        "xray:GetSamplingTargets": "Step Functions' X-Ray tracing",
    },
    "WebhookRelay": {
        "dynamodb:ListStreams": "Lambda's event source mapping reads the events table's stream",
        "dynamodb:DescribeStream": "Lambda's event source mapping reads the events table's stream",
        "dynamodb:GetShardIterator": "Lambda's event source mapping reads the events table's stream",
        "dynamodb:GetRecords": "Lambda's event source mapping reads the events table's stream",
        "sqs:GetQueueAttributes": "Lambda checks the event source mapping's on-failure destination",
        "sqs:GetQueueUrl": "Lambda checks the event source mapping's on-failure destination",
    },
    "WebhookDeliver": {
        "sqs:ReceiveMessage": "Lambda's event source mapping polls the delivery queue",
        "sqs:DeleteMessage": "Lambda's event source mapping deletes the messages the function handled",
        "sqs:ChangeMessageVisibility": "Lambda's event source mapping",
        "sqs:GetQueueAttributes": "Lambda's event source mapping",
        "sqs:GetQueueUrl": "Lambda's event source mapping",
    },
    "Triggers": {
        "sqs:SendMessage": "Lambda sends a failed asynchronous invocation to the on-failure destination",
        "sqs:GetQueueAttributes": "Lambda checks the on-failure destination",
        "sqs:GetQueueUrl": "Lambda checks the on-failure destination",
    },
}

_TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
_ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}


@dataclass(frozen=True)
class RolePolicy:
    principal: str
    role: str  # logical id
    actions: frozenset[str]  # of its Allow statements

    def document(self, without: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The policy moto enforces: the actions (less `without`), resources `*`, no conditions."""
        kept = sorted(self.actions - without)
        statements = [{"Effect": "Allow", "Action": kept, "Resource": "*"}] if kept else []
        return {"Version": "2012-10-17", "Statement": statements}

    def exercisable(self) -> frozenset[str]:
        """The actions our code is expected to call (what NOT_OUR_CALLS leaves)."""
        others = {**NOT_OUR_CALLS["*"], **NOT_OUR_CALLS.get(self.principal, {})}
        return frozenset(a for a in self.actions if a not in others)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_policies(template: Mapping[str, Any]) -> dict[str, RolePolicy]:
    """Each principal's allowed actions: Allow statements of the AWS::IAM::Policy resources attached to its role and
    of the role's inline policies (none of these roles has managed policies: checked here)."""
    resources = template["Resources"]
    out: dict[str, RolePolicy] = {}
    for principal, path in PRINCIPALS.items():
        role = logical_id(template, path)
        props = resources[role]["Properties"]
        assert not props.get("ManagedPolicyArns"), f"{principal}: managed policies are not modelled here"
        statements = [s for p in props.get("Policies", []) for s in _as_list(p["PolicyDocument"]["Statement"])]
        for res in resources.values():
            if res["Type"] == "AWS::IAM::Policy" and {"Ref": role} in res["Properties"].get("Roles", []):
                statements += _as_list(res["Properties"]["PolicyDocument"]["Statement"])
        actions = {a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"])}
        out[principal] = RolePolicy(principal, role, frozenset(actions))
    return out


def iam_actions(action: str, body: Any, region: str) -> list[tuple[str, str]]:
    """The IAM actions AWS checks for one API call, each with the resource it names (a table, a bucket; "" when not
    modelled). moto checks the operation name only; AWS also checks:

    * `lambda:InvokeFunction` for Invoke;
    * the actions of a TransactWriteItems' items, on their tables;
    * with RunTask, `iam:PassRole` of the task definition's execution role (the stack's sandbox task has one) and
      `ecs:TagResource` when it tags the task;
    * with Secrets Manager on a secret encrypted by a customer-managed key, the caller's own `kms:Decrypt` (reads and
      writes) and `kms:GenerateDataKey` (writes): Secrets Manager uses the key on the caller's behalf.
    """
    service, _, operation = action.partition(":")
    doc = _json(body)
    if service == "lambda" and operation in ("Invoke", "InvokeWithResponseStream"):
        return [("lambda:InvokeFunction", "")]
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            out = set()
            for item in doc.get("TransactItems", []):
                for kind, op in item.items():
                    if kind in _TRANSACT_ITEM_ACTIONS:
                        out.add((_TRANSACT_ITEM_ACTIONS[kind], str(op.get("TableName", ""))))
            return sorted(out)
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(action, str(table)) for table in sorted(doc.get("RequestItems", {}))]
        return [(action, str(doc.get("TableName", "")))]
    if service == "ecs" and operation == "RunTask":
        extra = [("ecs:TagResource", "")] if doc.get("tags") else []
        return [(action, ""), ("iam:PassRole", ""), *extra]
    if service == "secretsmanager" and operation in ("CreateSecret", "GetSecretValue", "PutSecretValue"):
        key = doc.get("KmsKeyId") if operation == "CreateSecret" else _secret_key(str(doc.get("SecretId", "")), region)
        if key and "alias/aws/secretsmanager" not in str(key):
            uses = [("kms:Decrypt", "")] + ([] if operation == "GetSecretValue" else [("kms:GenerateDataKey", "")])
            return [(action, ""), *uses]
    return [(action, "")]


def _json(body: Any) -> dict[str, Any]:
    if not isinstance(body, str | bytes | bytearray):
        return {}
    try:
        doc = json.loads(body or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _secret_key(secret_id: str, region: str) -> str | None:
    """The KMS key of a secret in moto (None: the account's default key, or no such secret)."""
    from moto.secretsmanager.models import secretsmanager_backends

    backend = secretsmanager_backends["123456789012"][region]
    for secret in backend.secrets.values():
        if secret_id in (secret.name, secret.arn):
            return getattr(secret, "kms_key_id", None)
    return None


@dataclass(frozen=True)
class Check:
    """One action moto checked: who, what, on which table or bucket (when modelled), and whether it was allowed."""

    principal: str
    action: str
    allowed: bool
    resource: str = ""


@dataclass
class IamEnforcement:
    """Roles from the template in moto, request signing per principal, and a record of every check."""

    template: Mapping[str, Any]
    without: Mapping[str, frozenset[str]] = field(default_factory=dict)  # actions taken away (mutation runs)
    checks: list[Check] = field(default_factory=list)
    policies: dict[str, RolePolicy] = field(default_factory=dict)
    _credentials: dict[str, Credentials] = field(default_factory=dict)
    _principal_of_key: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def provision(self, region: str) -> None:
        """Create the roles and an admin user in moto and take credentials for each (before auth is enforced).

        Straight into moto's IAM and STS backends, not through boto3: the same roles, policies (moto's policy
        validator still checks each document) and credentials, without ~40 serialized requests per platform (a
        quarter of its set-up CPU)."""
        self.policies = role_policies(self.template)
        iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
        sts = sts_backends[DEFAULT_ACCOUNT_ID]["aws"]
        iam.create_user(region, "test-admin")
        iam.put_user_policy("test-admin", "admin", json.dumps(_ADMIN_POLICY))
        key = iam.create_access_key("test-admin")
        self._credentials["admin"] = Credentials(key.access_key_id, key.secret_access_key)
        self._principal_of_key[key.access_key_id] = "admin"
        for principal, policy in self.policies.items():
            name = f"test-{principal}"
            role = iam.create_role(name, json.dumps(_TRUST), "/", None, "", [], None)
            document = policy.document(self.without.get(principal, frozenset()))
            iam.put_role_policy(name, "synthesized", json.dumps(document))
            creds = sts.assume_role(region, principal, role.arn, "", 3600, "")
            self._credentials[principal] = Credentials(
                creds.access_key_id, creds.secret_access_key, creds.session_token
            )
            self._principal_of_key[creds.access_key_id] = principal

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Sign per principal, propagate the principal to threads, record and map checks; then enforce."""
        add_auth: Callable[..., Any] = SigV4Auth.add_auth
        enforcement = self

        def signed_as_principal(auth: SigV4Auth, request: Any) -> Any:
            auth.credentials = enforcement._credentials[PRINCIPAL.get() or "admin"]
            return add_auth(auth, request)

        monkeypatch.setattr(SigV4Auth, "add_auth", signed_as_principal)

        start: Callable[..., Any] = threading.Thread.start

        def start_as_principal(thread: threading.Thread) -> Any:
            principal = PRINCIPAL.get()
            if principal is not None:
                run = thread.run

                def run_as() -> None:
                    PRINCIPAL.set(principal)
                    run()

                thread.run = run_as  # type: ignore[method-assign]
            return start(thread)

        monkeypatch.setattr(threading.Thread, "start", start_as_principal)

        execution_logic: Callable[..., Any] = ExecutionWorker._execution_logic

        def execute_as_state_machine(worker: Any) -> Any:
            PRINCIPAL.set("StateMachine")  # this thread is the execution's own
            return execution_logic(worker)

        monkeypatch.setattr(ExecutionWorker, "_execution_logic", execute_as_state_machine)

        check: Callable[..., Any] = IAMRequestBase.check_action_permitted

        def checked(request: IAMRequestBase, resource: str) -> None:
            scope = request._headers["Authorization"].partition("Credential=")[2]
            key = scope.partition("/")[0]
            principal = enforcement._principal_of_key.get(key, f"unknown:{key}")
            original = request._action
            try:
                body = request._body or request._data
                for action, named in iam_actions(original, body, request._region):  # type: ignore[arg-type]
                    request._action = action
                    try:
                        check(request, resource)
                    except Exception:
                        enforcement._record(Check(principal, action, allowed=False, resource=named))
                        raise
                    enforcement._record(Check(principal, action, allowed=True, resource=named))
            finally:
                request._action = original

        monkeypatch.setattr(IAMRequestBase, "check_action_permitted", checked)

        check_signature: Callable[..., Any] = IAMRequestBase.check_signature

        def signature_checked(request: IAMRequestBase) -> None:
            # moto recomputes EventBridge Scheduler's signatures wrongly (its rest-json GETs with a query fail for any
            # credentials): the key still names the principal, and the action check below still applies
            scope = request._headers.get("Authorization", "").partition("Credential=")[2].split(",")[0]
            if "/scheduler/" in scope:
                return
            check_signature(request)

        monkeypatch.setattr(IAMRequestBase, "check_signature", signature_checked)

    @contextlib.contextmanager
    def enforced(self) -> Iterator[None]:
        from moto import settings

        before = (settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = before

    @contextlib.contextmanager
    def unchecked(self) -> Iterator[None]:
        """A block whose requests moto does not check: a presigned S3 POST (browser-based upload), whose policy
        document and signature moto cannot verify (it wants an Authorization header). Not for anything else."""
        from moto import settings

        before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 1 << 60
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = before

    def _record(self, check: Check) -> None:
        with self._lock:
            self.checks.append(check)

    def denials(self) -> list[Check]:
        with self._lock:
            return [c for c in self.checks if not c.allowed and c.principal != "admin"]

    def used(self) -> dict[str, set[str]]:
        """principal -> the actions its calls needed (allowed or not)."""
        out: dict[str, set[str]] = {}
        with self._lock:
            for c in self.checks:
                out.setdefault(c.principal, set()).add(c.action)
        return out


@contextlib.contextmanager
def acting_as(principal: str) -> Iterator[None]:
    """Run the block as `principal` (its AWS calls sign with its role's credentials)."""
    token = PRINCIPAL.set(principal)
    try:
        yield
    finally:
        PRINCIPAL.reset(token)


def permits(policy: Mapping[str, Any], action: str) -> bool:
    """moto's own evaluation of one action against a policy document."""
    return IAMPolicy(json.dumps(policy)).is_action_permitted(action) == PermissionResult.PERMITTED
