"""Lambda cold path: what each Lambda entry point costs before and during its first invocation.

Every figure comes from fresh interpreters started with the environment the stack gives the function (table names,
bucket, state machine, `LAMBDA_TASK_ROOT` so Powertools tracing is on as in Lambda), against moto on loopback
(`ThreadedMotoServer` in this process, reached through `AWS_ENDPOINT_URL`) and the scripted model:

- `init_ms`: median wall time of the Lambda init phase, i.e. importing the handler module (for the API: importing
  `uvicorn` and `managed_agents.api.lambda_app` and building the app, which `functions/api/run.sh` does at init);
- `init_ms_no_pyc`: the same when none of the non-stdlib modules has bytecode, as with an asset that ships no
  `__pycache__` (/var/task is read-only, so every init compiles each module from source). The bundled asset compiles
  its bytecode at build time (`compile_bytecode` in stacks/lambda_bundle.py), so `init_ms`, measured with
  this checkout's bytecode, is the deployed figure; `init_ms_no_pyc` is what that step saves;
- `first_call_ms` / `warm_call_ms`: the first and the second invocation of the handler in the same process, each with
  a real event of its kind (ModelTurn: a model turn of a fresh session, the key read from Secrets Manager; triggers:
  a new session; API: `GET /v1/agents` with a valid key; provisioner: a stop); `first_call_extra_ms` = first - warm
  is the init the first invocation still pays (deps, boto3 clients, the model client, the first X-Ray segment);
- `rss_after_init_mb` / `peak_rss_mb`: the process's resident set after the init and its peak (VmHWM) after the two
  invocations, for memory sizing (the Lambda runtime's own process and the layer's adapter are not included);
- `by_package`: `-X importtime` self time summed per top-level package; `pulled_by`: which of our modules imports a
  third-party package first, with the cumulative ms of that import (the line to change to shorten the path).

Each entry point runs in two modes: `on-demand` and `snap-start` (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, as
Lambda sets it while it builds a SnapStart snapshot; the entry points then prime their deps at init, see
managed_agents/lambda_init.py). With SnapStart the init runs once, when a version is published; what a restored
environment still pays is the restore itself (not measurable off AWS: it depends on the snapshot's size and Lambda's
cache) plus `first_call_extra_ms` of the snap-start mode. `api_stream` is the API app as the event-stream function
serves it: one `GET .../events/stream` held open for `STREAM_SECONDS` per invocation. Reference rows in the same run:
`import boto3`, `import anthropic`, `import fastapi`. Python is this machine's (3.11), not the Lambda runtime's.

Run: `uv run --frozen python bench/lambda_cold_path.py [--runs N] [--quick] [--only model_turn,api]`.
Timings are wall times on a shared machine: compare rows of the same run, not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import sysconfig
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import emit

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
MARK = "COLDPATH "
FIRST_PARTY = ("managed_agents", "functions")
MISSING_SESSION = "sesn_011CZbenchcoldpathmissing"
STREAM_SECONDS = 1.5  # how long the api_stream invocations hold their stream open
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@dataclass(frozen=True)
class EntryPoint:
    name: str
    init: str  # code timed as the init phase; binds `handler` (or `app` for the API)
    call: str  # one invocation; `_n` is 0 for the first call and 1 for the warm one; `fixture` is `prepare()`'s
    env: tuple[str, ...] = ()  # which of the moto/model environment variables the stack gives this function
    prepare: str = ""  # name of a Fixtures method returning per-child data (e.g. two sessions with a pending message)


_CONTEXT = """
class _Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench-request"
    def get_remaining_time_in_millis(self): return 60_000
context = _Context()
fixture = json.loads(os.environ.get("BENCH_FIXTURE", "null"))
"""

_ASGI_GET = """
import asyncio
def asgi_get(app, path, headers):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}
    out = {}
    async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        if message["type"] == "http.response.start": out["status"] = message["status"]
    asyncio.run(app(scope, receive, send))
    if out["status"] != 200: raise RuntimeError(f"HTTP {out['status']}")

def asgi_stream(app, path, headers, seconds):
    # hold an SSE response open for `seconds`, then disconnect; the bytes received
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}
    out = {"status": None, "bytes": 0}
    async def run():
        gone = asyncio.Event()
        sent = False
        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}
        async def send(message):
            if message["type"] == "http.response.start": out["status"] = message["status"]
            elif message["type"] == "http.response.body": out["bytes"] += len(message.get("body", b""))
        task = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(seconds)
        gone.set()
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.TimeoutError:
            pass
    asyncio.run(run())
    if out["status"] != 200 or not out["bytes"]: raise RuntimeError(f"stream: {out}")
    return out["bytes"]
"""

DATA = ("tables", "bucket")
ENTRY_POINTS = [
    EntryPoint(
        "model_turn",
        "from functions.model_turn.handler import handler",
        # a real turn: a session with a pending user.message, the model key from Secrets Manager, the scripted model
        "out = handler({'session_id': fixture['sessions'][_n], 'turns': 0, 'execution': None}, context)\n"
        "assert out['outcome'] in ('run_again', 'parked'), out",
        env=(*DATA, "state_machine", "model_secret", "model_url", "api_url"),
        prepare="two_sessions",
    ),
    EntryPoint(
        "report_failure",
        "from functions.model_turn.handler import report_failure as handler",
        "handler({'session_id': fixture['sessions'][_n], 'error': {'Error': 'States.Timeout', 'Cause': 'bench'}}, "
        "context)",
        env=DATA,
        prepare="two_sessions",
    ),
    EntryPoint(
        "tool_wait",
        "from functions.tool_wait.handler import handler",
        "handler({'session_id': fixture['sessions'][_n], 'task_token': 'bench-token'}, context)",
        env=DATA,
        prepare="two_sessions",
    ),
    EntryPoint(
        "provisioner",
        "from functions.provisioner.handler import handler",
        f"handler({{'action': 'stop', 'session_id': '{MISSING_SESSION}', 'work_id': 'work_bench'}}, context)",
        env=("tables", "ecs", "api_url"),
    ),
    EntryPoint(
        "triggers",
        "from functions.triggers.handler import handler",
        "out = handler({'id': f'bench-{fixture[\"nonce\"]}-{_n}', 'source': 'bench', 'detail-type': 'StartSession', "
        "'detail': {'workspace_id': fixture['workspace'], 'agent': fixture['agent'], "
        "'environment_id': fixture['environment'], 'message': 'hi'}}, context)\n"
        "assert out['created'], out",
        env=(*DATA, "state_machine"),
        prepare="trigger_target",
    ),
    EntryPoint(
        "api",
        "import uvicorn\nfrom managed_agents.api import lambda_app\napp = lambda_app.app",
        "asgi_get(app, '/v1/agents', {'authorization': f'Bearer {fixture[\"key\"]}', "
        "'anthropic-version': '2023-06-01'})",
        env=(*DATA, "state_machine", "vault"),
        prepare="api_key",
    ),
    EntryPoint(
        "api_stream",
        "import uvicorn\nfrom managed_agents.api import lambda_app\napp = lambda_app.app",
        "asgi_stream(app, f'/v1/sessions/{fixture[\"sessions\"][_n]}/events/stream', {'authorization': "
        f"f'Bearer {{fixture[\"key\"]}}', 'anthropic-version': '2023-06-01'}}, {STREAM_SECONDS})",
        env=(*DATA, "stream"),
        prepare="key_and_sessions",
    ),
    EntryPoint(
        "mcp_proxy",
        "from functions.mcp_proxy.handler import handler",
        "",  # import only: its event contract belongs to the MCP proxy work
        env=("tables", "vault"),
    ),
]


_RSS = """
def _rss_mb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return None
"""


def child_program(ep: EntryPoint, *, no_pyc: bool) -> str:
    """The program a fresh interpreter runs: time the init, then two invocations; print one marked JSON line."""
    no_pyc_code = ""
    if no_pyc:
        # Compile every module outside the stdlib from source, as a Lambda does with an asset without __pycache__
        # (get_code treats NotImplementedError from cache_from_source as "no bytecode path": compile, do not write).
        no_pyc_code = textwrap.dedent(f"""
            import importlib._bootstrap_external as _be
            _cfs = _be.cache_from_source
            def _no_cache(path, *a, **kw):
                if path.startswith({sysconfig.get_paths()["stdlib"]!r}):
                    return _cfs(path, *a, **kw)
                raise NotImplementedError
            _be.cache_from_source = _no_cache
        """)
    call = textwrap.indent(ep.call or "pass", " " * 8)
    return "\n".join(
        [
            "import json, os, sys, time",
            no_pyc_code,
            "os.write(2, b'COLDPATH-INIT-START\\n')",
            "_t0 = time.perf_counter()",
            ep.init,
            "_t1 = time.perf_counter()",
            "os.write(2, b'COLDPATH-INIT-END\\n')",
            _RSS,
            "_rss_init = _rss_mb('VmRSS')",
            _CONTEXT,
            _ASGI_GET,
            "def _call(_n):",
            "    try:",
            call,
            "        return None",
            "    except Exception as exc:",
            "        return f'{type(exc).__name__}: {exc}'[:300]",
            "_t2 = time.perf_counter(); _e1 = _call(0); _t3 = time.perf_counter(); _e2 = _call(1)",
            "_t4 = time.perf_counter()",
            f"print({MARK!r} + json.dumps({{'init': _t1 - _t0, 'first': _t3 - _t2, 'warm': _t4 - _t3, "
            "'errors': [e for e in (_e1, _e2) if e], 'modules': len(sys.modules), 'rss_init': _rss_init, "
            "'rss_peak': _rss_mb('VmHWM')}), flush=True)",
        ]
    )


def run_child(code: str, env: dict[str, str], *, importtime: bool = False) -> tuple[dict[str, Any], str]:
    args = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code]
    proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :]), proc.stderr
    raise RuntimeError(f"child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


# -- -X importtime -----------------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    self_us: int
    cumulative_us: int
    children: list[Node] = field(default_factory=list)


def parse_importtime(stderr: str) -> list[Node]:
    """The import tree (roots in import order) from `-X importtime` lines, which list children before parents.

    A line is `import time: <self us> | <cumulative us> | <two spaces per level><module>`.
    """
    pending: dict[int, list[Node]] = defaultdict(list)
    window = stderr.split("COLDPATH-INIT-START\n", 1)[-1].split("COLDPATH-INIT-END\n", 1)[0]
    for line in window.splitlines():
        if not line.startswith("import time:") or line.endswith("imported package"):
            continue
        head, cumulative, rest = line.split("|", 2)
        name = rest.strip()
        level = (len(rest) - len(rest.lstrip(" ")) - 1) // 2
        node = Node(name, int(head.split(":", 1)[1]), int(cumulative), pending.pop(level + 1, []))
        pending[level].append(node)
    return pending.get(0, [])


def walk(nodes: list[Node]) -> Iterator[tuple[Node | None, Node]]:
    stack: list[tuple[Node | None, Node]] = [(None, n) for n in reversed(nodes)]
    while stack:
        parent, node = stack.pop()
        yield parent, node
        stack.extend((node, c) for c in reversed(node.children))


def first_party(name: str) -> bool:
    return name.split(".", 1)[0] in FIRST_PARTY


def attribute(roots: list[Node]) -> tuple[dict[str, float], dict[str, float]]:
    """(self ms per top-level package, cumulative ms of each third-party import made by first-party code).

    `roots` are the imports of the init phase; a third-party root was imported by a function run at init.
    """
    by_package: dict[str, float] = defaultdict(float)
    pulled_by: dict[str, float] = {}
    for parent, node in walk(roots):
        by_package[node.name.split(".", 1)[0]] += node.self_us / 1000
        if first_party(node.name) or (parent is not None and not first_party(parent.name)):
            continue
        key = f"{parent.name if parent else '(init code)'} -> {node.name}"
        pulled_by[key] = pulled_by.get(key, 0.0) + node.cumulative_us / 1000
    return by_package, pulled_by


def median_dicts(dicts: list[dict[str, float]], top: int) -> dict[str, float]:
    keys = {k for d in dicts for k in d}
    med = {k: statistics.median(d.get(k, 0.0) for d in dicts) for k in keys}
    return {k: round(v, 1) for k, v in sorted(med.items(), key=lambda kv: -kv[1])[:top]}


# -- environment ---------------------------------------------------------------------------------------------------


@dataclass
class Fixtures:
    """moto on loopback (tables, bucket, state machine, ECS cluster, model-key secret), the scripted model, and the
    AWS runtime on them to create what an invocation needs."""

    env: dict[str, dict[str, str]]  # per `EntryPoint.env` group
    rt: Any
    workspace: str
    agent: str
    environment: str

    def two_sessions(self) -> dict[str, Any]:
        from managed_agents.wire.sessions import SessionCreateParams

        first = {"type": "user.message", "content": [{"type": "text", "text": "hi"}]}
        params = {"agent": self.agent, "environment_id": self.environment, "initial_events": [first]}
        sessions = [
            self.rt.sessions.create(self.workspace, SessionCreateParams.model_validate(params))["id"] for _ in range(2)
        ]
        return {"sessions": sessions}

    def trigger_target(self) -> dict[str, Any]:
        ids = {"workspace": self.workspace, "agent": self.agent, "environment": self.environment}
        return {**ids, "nonce": os.urandom(6).hex()}

    def api_key(self) -> dict[str, Any]:
        return {"key": self.rt.keys.create_key(self.workspace, name="bench")[1]}

    def key_and_sessions(self) -> dict[str, Any]:
        return self.api_key() | self.two_sessions()


@contextmanager
def fixtures() -> Iterator[Fixtures]:
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    )
    import boto3
    from moto.server import ThreadedMotoServer

    from managed_agents.adapters.aws.dynamodb_event_store import create_events_table
    from managed_agents.adapters.aws.dynamodb_resource_store import create_resources_table
    from managed_agents.aws_runtime import AwsClients, build_aws_runtime
    from managed_agents.settings import (
        API_URL_ENV,
        ECS_CLUSTER_ENV,
        EVENTS_TABLE_ENV,
        MODEL_API_KEY_SECRET_ARN_ENV,
        RESOURCES_TABLE_ENV,
        SANDBOX_SUBNETS_ENV,
        SANDBOX_TASK_DEFINITION_ENV,
        SPILL_BUCKET_ENV,
        STATE_MACHINE_ARN_ENV,
        VAULT_SECRET_PREFIX_ENV,
        AwsSettings,
    )
    from managed_agents.testing.loopback import free_port
    from managed_agents.testing.scripted_model import ScriptedModelServer
    from managed_agents.wire.agents import AgentCreateParams
    from managed_agents.wire.environments import EnvironmentCreateParams

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        kw: dict[str, Any] = {"region_name": REGION, "endpoint_url": url}
        ddb, s3, sfn = (boto3.client(name, **kw) for name in ("dynamodb", "s3", "stepfunctions"))
        create_resources_table(ddb, "bench-resources")
        create_events_table(ddb, "bench-events")
        s3.create_bucket(Bucket="bench-spill")
        boto3.client("ecs", **kw).create_cluster(clusterName="bench-sandboxes")
        secret = boto3.client("secretsmanager", **kw).create_secret(Name="bench-model-key", SecretString="bench")
        definition = json.dumps({"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "End": True}}})
        sm_arn = sfn.create_state_machine(
            name="bench-session-run", definition=definition, roleArn="arn:aws:iam::123456789012:role/bench"
        )["stateMachineArn"]
        settings = AwsSettings(
            resources_table="bench-resources",
            events_table="bench-events",
            spill_bucket="bench-spill",
            state_machine_arn=sm_arn,
        )
        rt = build_aws_runtime(settings, clients=AwsClients(dynamodb=ddb, s3=s3, stepfunctions=sfn))
        ws = rt.keys.create_workspace("bench")
        agent = rt.agents.create(ws, AgentCreateParams.model_validate({"name": "bench", "model": "claude-scripted"}))
        environment = rt.environments.create(
            ws, EnvironmentCreateParams.model_validate({"name": "bench", "config": {"type": "self_hosted"}})
        )
        with ScriptedModelServer(fallback="echo") as model:
            env = {
                "tables": {RESOURCES_TABLE_ENV: "bench-resources", EVENTS_TABLE_ENV: "bench-events"},
                "bucket": {SPILL_BUCKET_ENV: "bench-spill"},
                "state_machine": {STATE_MACHINE_ARN_ENV: sm_arn},
                "model_secret": {MODEL_API_KEY_SECRET_ARN_ENV: secret["ARN"]},
                "model_url": {"ANTHROPIC_BASE_URL": model.base_url},
                "api_url": {API_URL_ENV: "http://127.0.0.1:9/"},
                "ecs": {
                    ECS_CLUSTER_ENV: "bench-sandboxes",
                    SANDBOX_TASK_DEFINITION_ENV: "bench-sandbox:1",
                    SANDBOX_SUBNETS_ENV: "subnet-0bench",
                },
                "vault": {VAULT_SECRET_PREFIX_ENV: "bench/vault/"},
                "stream": {"MANAGED_AGENTS_SSE_PING_SECONDS": "0.5"},  # a ping per poll: the stream sends bytes
                "moto": {"AWS_ENDPOINT_URL": url},
            }
            yield Fixtures(env, rt, ws, str(agent["id"]), str(environment["id"]))
    finally:
        server.stop()


def lambda_env(fx: Fixtures, ep: EntryPoint, mode: str) -> dict[str, str]:
    """The function's environment as the stack sets it, plus the Lambda runtime's own variables."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "POWERTOOLS_", "MANAGED_AGENTS_", "ANTHROPIC_", "_X_AMZN", "PYTHON"))
    }
    env = {
        **base,
        "PYTHONPATH": str(REPO),
        "LAMBDA_TASK_ROOT": str(REPO),
        "AWS_LAMBDA_FUNCTION_NAME": f"bench-{ep.name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_INITIALIZATION_TYPE": mode,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_MAX_ATTEMPTS": "1",
        "_X_AMZN_TRACE_ID": TRACE_HEADER,
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        "POWERTOOLS_SERVICE_NAME": "managed-agents",
        "POWERTOOLS_METRICS_NAMESPACE": "ManagedAgents",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **fx.env["moto"],
    }
    for group in ep.env:
        env |= fx.env[group]
    if ep.prepare:
        env["BENCH_FIXTURE"] = json.dumps(getattr(fx, ep.prepare)())
    return env


def reference_rows(fx: Fixtures, runs: int) -> None:
    for label, init in (("boto3", "import boto3"), ("anthropic", "import anthropic"), ("fastapi", "import fastapi")):
        ep = EntryPoint(f"ref_{label}", init, "")
        env = lambda_env(fx, ep, "on-demand")
        times = [run_child(child_program(ep, no_pyc=False), env)[0]["init"] * 1000 for _ in range(runs)]
        emit(bench="lambda_cold_path", reference=label, init_ms=round(statistics.median(times), 1), runs=runs)


def measure(ep: EntryPoint, fx: Fixtures, runs: int) -> None:
    for mode in ("on-demand", "snap-start"):
        results = [run_child(child_program(ep, no_pyc=False), lambda_env(fx, ep, mode))[0] for _ in range(runs)]
        row: dict[str, Any] = {
            "bench": "lambda_cold_path",
            "entry_point": ep.name,
            "mode": mode,
            "runs": runs,
            "init_ms": round(statistics.median(r["init"] for r in results) * 1000, 1),
        }
        if ep.call:
            first = statistics.median(r["first"] for r in results) * 1000
            warm = statistics.median(r["warm"] for r in results) * 1000
            row |= {
                "first_call_ms": round(first, 1),
                "warm_call_ms": round(warm, 1),
                "first_call_extra_ms": round(first - warm, 1),
                "cold_path_ms": round(statistics.median(r["init"] + r["first"] for r in results) * 1000, 1),
            }
            errors = sorted({e for r in results for e in r["errors"]})
            if errors:
                row["call_errors"] = errors
        row["modules_loaded"] = results[0]["modules"]
        if results[0]["rss_peak"] is not None:
            row["rss_after_init_mb"] = round(statistics.median(r["rss_init"] for r in results), 1)
            row["peak_rss_mb"] = round(statistics.median(r["rss_peak"] for r in results), 1)
        if mode == "on-demand":
            env = lambda_env(fx, ep, mode)
            no_pyc = [run_child(child_program(ep, no_pyc=True), env)[0]["init"] for _ in range(max(1, runs // 2))]
            row["init_ms_no_pyc"] = round(statistics.median(no_pyc) * 1000, 1)
            trees = [run_child(child_program(ep, no_pyc=False), env, importtime=True)[1] for _ in range(runs)]
            attributed = [attribute(parse_importtime(t)) for t in trees]
            row["by_package"] = median_dicts([a[0] for a in attributed], 8)
            row["pulled_by"] = median_dicts([a[1] for a in attributed], 8)
        emit(**row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per figure (median)")
    parser.add_argument("--quick", action="store_true", help="one run per figure")
    parser.add_argument("--only", default="", help="comma-separated entry points (default: all)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    only = {n for n in args.only.split(",") if n}
    with fixtures() as fx:
        reference_rows(fx, runs)
        for ep in ENTRY_POINTS:
            if only and ep.name not in only:
                continue
            module = ep.init.splitlines()[-1].split()[1]
            if not ep.name.startswith("api") and not (REPO / (module.replace(".", "/") + ".py")).exists():
                emit(bench="lambda_cold_path", entry_point=ep.name, skipped=f"{module} does not exist yet")
                continue
            measure(ep, fx, runs)


if __name__ == "__main__":
    main()
