"""AWS cost model: $ per active session-hour of the reference workload, from counts measured in a moto run.

The run is tests/aws/platform.py (`aws_platform`): the state machine synthesized by `python app.py`, executed by moto
with every Lambda invocation dispatched to our real handler in-process, DynamoDB/S3/Secrets Manager/ECS in moto, the
API Lambda's app on loopback, a Fargate task played by the official worker subprocess, the scripted model.

Workload: one session; a warm-up message first (sandbox provisioning, first execution: not counted), then
`--messages` user messages, each answered by `--tool-turns` model turns that call one built-in tool (`bash`, run by
the worker) and a final answer turn. Every count below is measured over those messages and divided by their model
turns; the reference hour is 180 model turns (one every 20 s) on a 1 vCPU / 2 GB ARM Fargate sandbox.

Measured (per model turn): state transitions (execution histories); Lambda invocations per function and their
in-process handler wall time (a proxy for billed duration, which in Lambda also includes the runtime's overhead);
DynamoDB calls and request units computed from item sizes (moto's ConsumedCapacity is a constant, so units follow
the DynamoDB rules: writes ceil(max(old, new) / 1 KB) per item and per GSI holding it, reads ceil(bytes / 4 KB) per
request, halved when eventually consistent, doubled in transactions; a failed condition still costs the write);
S3 puts; bytes stored; API requests by route, split into the worker's (time-driven: heartbeats, polls) and per-turn
ones; Powertools log bytes; the events-table stream records the webhook relay's filter passes (one relay invocation
each) and the relay's time over them.

Priced per deployment rather than per session (`idle_month`): what a deployment costs with no session at all, the KMS
key, the two secrets and one per vault credential, SnapStart's snapshot cache of each SnapStart function (billed per
GB-second of its memory while its version is active), the work reaper's invocation every minute (its metric is
published only when it reaps), NAT gateways when used.

Modelled, with the assumption printed: the model's streaming time the ModelTurn Lambda waits through
(`--model-seconds`), the open event streams (the worker's; the client's unless `--client polling`), which keep an API
Lambda invocation running for their whole life, Lambda platform and metric log lines, API access log lines, and
the model key read from Secrets Manager every 5 minutes, the sandbox's public IPv4 address. Excluded: model tokens,
KMS requests, X-Ray. Added per active hour: SnapStart restores (`RESTORES_PER_HOUR` cold starts of
the SnapStart functions), the custom metrics published in the run (each metric-hour counted against the one session:
they are per deployment), Container Insights when on (`CONTAINER_INSIGHTS_METRICS` metrics and its performance log
events), NAT data when sandboxes egress through a NAT gateway (an image pull per sandbox start and the worker's API
traffic).

Run: `uv run --frozen python bench/aws_cost_model.py [--quick] [--messages N] [--tool-turns K] [--model-seconds S]`.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import emit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# us-east-1 public list prices, checked 2025 (DynamoDB on-demand after its Nov 2024 price cut). ARM64 where it applies.
PRICES_SOURCE = "aws.amazon.com/<service>/pricing, us-east-1 list prices as of 2025 (DynamoDB: Nov 2024 on-demand)"
PRICES = {
    "stepfunctions_standard_per_transition": 0.025 / 1000,
    "lambda_arm_per_gb_second": 0.0000133334,
    "lambda_per_request": 0.20 / 1_000_000,
    "dynamodb_per_wru": 0.625 / 1_000_000,
    "dynamodb_per_rru": 0.125 / 1_000_000,
    "dynamodb_storage_per_gb_month": 0.25,
    "fargate_arm_per_vcpu_hour": 0.03238,
    "fargate_arm_per_gb_hour": 0.00356,
    "apigateway_rest_per_request": 3.50 / 1_000_000,
    "cloudwatch_logs_ingest_per_gb": 0.50,
    "secretsmanager_per_api_call": 0.05 / 10_000,
    "public_ipv4_per_hour": 0.005,  # the sandbox task's public address (default networking: no NAT gateway)
    # SnapStart for Python: the snapshot cache per GB-second of the function's memory while a version is active
    # (idle or not, 3 hours at least), and each restore per GB of memory restored
    "snapstart_cache_per_gb_second": 0.0000015046,
    "snapstart_restore_per_gb": 0.0001397998,
    "custom_metric_per_month": 0.30,  # CloudWatch custom metrics (first 10,000), pro-rated by the hours published
    "secret_per_month": 0.40,  # Secrets Manager, per secret (the two keys, and one per vault credential)
    "kms_key_per_month": 1.00,
    "nat_gateway_per_hour": 0.045,
    "nat_per_gb": 0.045,  # NAT gateway data processing
    "cloudwatch_logs_storage_per_gb_month": 0.03,
}
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = 30 * 24 * 3600
GOAL_ON_DEMAND = 0.08  # per active session-hour, on-demand defaults (the hosted price for the same sandbox)
GOAL_SPOT = 0.04  # the same with sandboxSpot=true
GOAL_IDLE_MONTH = 5.0  # a deployment with no session
HOSTED_PER_HOUR = 0.08
TURNS_PER_HOUR = 180  # one model turn every 20 s
SANDBOX_VCPU, SANDBOX_GB = 1.0, 2.0
DYNAMODB_ITEM_OVERHEAD_BYTES = 100  # storage counts 100 bytes of index overhead per item (DynamoDB pricing page)
LAMBDA_PLATFORM_LOG_BYTES = 350  # START + END + REPORT lines of one invocation
EMF_LOG_BYTES = 300  # one Powertools metrics (EMF) document per invocation
ACCESS_LOG_BYTES = 400  # one API Gateway access log line (JSON, the stack's stage format)
SECRET_CACHE_SECONDS = 300  # the model key's cache (managed_agents/aws_runtime.py SECRET_MAX_AGE_SECONDS)
# the official worker heartbeats its lease every min(ttl / 2, 30 s) (anthropic.lib.environments); our lease is 60 s
WORKER_HEARTBEAT_SECONDS = 30.0
STREAM_POLL_ENV = "MANAGED_AGENTS_STREAM_POLL_SECONDS"
RESTORES_PER_HOUR = 2.0  # cold starts of each SnapStart function per active session-hour (assumed)
CONTAINER_INSIGHTS_METRICS = 24  # ECS Container Insights (standard): ~12 metrics x (cluster, task family) dimensions
CONTAINER_INSIGHTS_LOG_BYTES_PER_HOUR = 90_000  # its performance log events of one task (one a minute, ~1.5 KB)
SANDBOX_IMAGE_GB = 0.2  # the sandbox image pulled at each sandbox start (compressed layers), through NAT if any
SANDBOX_STARTS_PER_HOUR = 1.0  # the sandbox idles out after 5 minutes without work; the reference keeps it busy
REAPER_BILLED_MS = 100  # the work reaper's billed duration per run (one Query of the live-work index)
TIME_DRIVEN_ROUTES = ("heartbeat", "poll")  # the worker's lease heartbeats and empty work polls
# The API function's duration per request, modelled from what the run measures of it rather than its wall time here
# (which waits on moto's lock and the other handlers on a shared machine): the CPU time its code spends (the event
# loop's steps and its threads, moto's own work taken out), run at Lambda's CPU share for the memory (one vCPU at
# 1,769 MB), plus a round trip per AWS call it makes. CPU is measured on this machine, not on Graviton.
LAMBDA_MB_PER_VCPU = 1769
AWS_CALL_SECONDS = {"dynamodb": 0.005, "s3": 0.015}  # in-region round trips (typical p50); others:
AWS_CALL_SECONDS_OTHER = 0.02  # Step Functions, Lambda Invoke, Secrets Manager, EventBridge

_origin: contextvars.ContextVar[str] = contextvars.ContextVar("origin", default="task")


@dataclass
class RequestCpu:
    """One API request (not an event stream): the CPU time it spent, and what of it was moto's or the meter's."""

    route: str
    cpu: float = 0.0  # thread CPU time of its loop steps and its worker-thread calls
    moto: float = 0.0  # of which moto's backends served its AWS calls (AWS's work, not the function's)
    meter: float = 0.0  # of which the meter's own reads (item sizes), less their moto part
    calls: Counter[str] = field(default_factory=Counter)  # its AWS calls by service

    def own_cpu(self) -> float:
        return max(0.0, self.cpu - self.moto - self.meter)

    def io_seconds(self) -> float:
        return sum(n * AWS_CALL_SECONDS.get(svc, AWS_CALL_SECONDS_OTHER) for svc, n in self.calls.items())

    def duration(self, memory_mb: int) -> float:
        """Modelled billed duration at `memory_mb` (Lambda rounds up to the millisecond)."""
        share = min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)
        return math.ceil((self.io_seconds() + self.own_cpu() / share) * 1000) / 1000


_request_cpu: contextvars.ContextVar[RequestCpu | None] = contextvars.ContextVar("request_cpu", default=None)
_uninstrumented = threading.local()


# -- DynamoDB request units from item sizes ------------------------------------------------------------------------


def value_size(v: dict[str, Any]) -> int:
    """Approximate stored size of one AttributeValue (DynamoDB item size rules)."""
    ((kind, x),) = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        return len(x.lstrip("-").replace(".", "").lstrip("0")) // 2 + 2
    if kind == "B":
        return len(x)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: e}) for e in x)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in x.items())
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in x)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


@dataclass(frozen=True)
class Index:
    """A global secondary index as DescribeTable gives it: its key attributes and what it projects."""

    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()

    def entry(self, item: dict[str, Any] | None, table_keys: list[str]) -> dict[str, Any] | None:
        """The item's entry in this index (None: the item is not in it)."""
        if not item or not all(a in item for a in self.keys):
            return None
        if self.projection == "ALL":
            return item
        kept = {*table_keys, *self.keys, *self.include}
        return {k: v for k, v in item.items() if k in kept}

    def write_units(self, before: dict[str, Any] | None, after: dict[str, Any] | None, table_keys: list[str]) -> int:
        """WRU one table write costs this index (developer guide, "Global secondary indexes: writes"): nothing when
        the item is in the index neither before nor after or its entry is unchanged (a KEYS_ONLY index is not
        written when only unprojected attributes change); one write of the entry when it appears, disappears or
        only its projected attributes change; two (a delete and a put) when an index key attribute changes."""
        old, new = self.entry(before, table_keys), self.entry(after, table_keys)
        if old == new:  # (both None: not in the index)
            return 0
        if old is None or new is None:
            return math.ceil(max(item_size(old or new), 1) / 1024)
        if any(old[a] != new[a] for a in self.keys):
            return math.ceil(max(item_size(old), 1) / 1024) + math.ceil(max(item_size(new), 1) / 1024)
        return math.ceil(max(item_size(old), item_size(new), 1) / 1024)


def index_units(indexes: list[Index], before: Any, after: Any, table_keys: list[str]) -> int:
    return sum(i.write_units(before, after, table_keys) for i in indexes)


@dataclass
class Units:
    wru: float = 0.0
    rru: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)


@dataclass
class Meter:
    """Everything counted while the platform runs; `snapshot()` and `minus()` give a window's counts."""

    ddb: dict[str, Units] = field(default_factory=lambda: defaultdict(Units))  # by origin (task / stream)
    ddb_by_table: Counter[str] = field(default_factory=Counter)  # WRU + RRU per table
    ddb_by_operation: Counter[str] = field(default_factory=Counter)  # "table Operation WRU|RRU" -> units
    calls: Counter[str] = field(default_factory=Counter)  # "service.Operation"
    s3_put_bytes: int = 0
    lambda_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lambda_calls: Counter[str] = field(default_factory=Counter)
    api_requests: Counter[str] = field(default_factory=Counter)  # "who METHOD /route"
    api_seconds: float = 0.0  # API Lambda time of the requests that are not event streams
    log_bytes: int = 0
    open_streams: int = 0  # event streams open now
    metric_names: set[str] = field(default_factory=set)  # custom metrics published (Powertools add_metric)
    request_cpu: list[RequestCpu] = field(default_factory=list)  # the API's non-stream requests, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "ddb": {k: (u.wru, u.rru, Counter(u.calls)) for k, u in self.ddb.items()},
                "ddb_by_table": Counter(self.ddb_by_table),
                "ddb_by_operation": Counter(self.ddb_by_operation),
                "calls": Counter(self.calls),
                "s3_put_bytes": self.s3_put_bytes,
                "lambda_seconds": dict(self.lambda_seconds),
                "lambda_calls": Counter(self.lambda_calls),
                "api_requests": Counter(self.api_requests),
                "api_seconds": self.api_seconds,
                "log_bytes": self.log_bytes,
                "request_cpu": len(self.request_cpu),  # (a position: the window's requests are the ones after it)
            }


def minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, a in after.items():
        b = before[key]
        if key == "ddb":
            out[key] = {
                o: (
                    w - b.get(o, (0, 0, Counter()))[0],
                    r - b.get(o, (0, 0, Counter()))[1],
                    c - b.get(o, (0, 0, Counter()))[2],
                )
                for o, (w, r, c) in a.items()
            }
        elif isinstance(a, Counter):
            out[key] = a - b
        elif isinstance(a, dict):
            out[key] = {k: v - b.get(k, 0.0) for k, v in a.items()}
        else:
            out[key] = a - b
    return out


class DynamoDbUnits:
    """Wraps botocore's `_make_api_call`: counts every AWS call and the DynamoDB request units it consumes."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.schemas: dict[str, tuple[list[str], list[Index]]] = {}  # table -> (key attrs, its GSIs)

    def install(self, monkeypatch: Any) -> None:
        from botocore.client import BaseClient

        original: Callable[..., Any] = BaseClient._make_api_call
        units = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if getattr(_uninstrumented, "on", False):
                return original(client, operation, params)
            service = client.meta.service_model.service_name
            req = _request_cpu.get()
            if req is not None:
                req.calls[service] += 1
            with units.meter.lock:
                units.meter.calls[f"{service}.{operation}"] += 1
                if service == "s3" and operation == "PutObject":
                    body = params.get("Body", b"")
                    units.meter.s3_put_bytes += len(body) if isinstance(body, bytes | str) else 0
            if service != "dynamodb":
                return original(client, operation, params)
            raw = functools_partial(original, client)
            return units.dynamodb_call(raw, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)

    def _raw(self, raw: Callable[[str, dict[str, Any]], Any], operation: str, params: dict[str, Any]) -> Any:
        """The meter's own reads (a table's schema, an item's size before a write): made as the platform's admin, not
        as the function being metered, whose role (IAM enforced) need not allow them."""
        from tests.aws.iam import PRINCIPAL

        _uninstrumented.on = True
        token = PRINCIPAL.set(None)
        req, t0 = _request_cpu.get(), time.thread_time()
        try:
            return raw(operation, params)
        finally:
            if req is not None:
                req.meter += time.thread_time() - t0
            PRINCIPAL.reset(token)
            _uninstrumented.on = False

    def _schema(self, raw: Callable[..., Any], table: str) -> tuple[list[str], list[Index]]:
        if table not in self.schemas:
            desc = self._raw(raw, "DescribeTable", {"TableName": table})["Table"]
            keys = [k["AttributeName"] for k in desc["KeySchema"]]
            gsis = [
                Index(
                    tuple(k["AttributeName"] for k in g["KeySchema"]),
                    g["Projection"]["ProjectionType"],
                    tuple(g["Projection"].get("NonKeyAttributes", ())),
                )
                for g in desc.get("GlobalSecondaryIndexes", [])
            ]
            self.schemas[table] = (keys, gsis)
        return self.schemas[table]

    def _current(self, raw: Callable[..., Any], table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._raw(raw, "GetItem", {"TableName": table, "Key": key}).get("Item")
        return item

    def _write(
        self,
        raw: Callable[..., Any],
        table: str,
        key: dict[str, Any],
        do: Callable[[], Any],
        *,
        new: dict[str, Any] | None = None,
        factor: float = 1.0,
    ) -> tuple[Any, float, Exception | None]:
        """Run one item write; its WRU: max(old, new) size per KB for the table, plus what each GSI is written."""
        keys, gsis = self._schema(raw, table)
        before = self._current(raw, table, key)
        result, error = None, None
        try:
            result = do()
        except Exception as exc:  # a failed condition still consumes the write
            error = exc
        after = new if new is not None else (self._current(raw, table, key) if error is None else before)
        size = max(item_size(before), item_size(after), 1)
        per_write = math.ceil(size / 1024)
        indexed = index_units(gsis, before, after, keys) if error is None else 0
        return result, factor * (per_write + indexed), error

    def dynamodb_call(self, raw: Callable[[str, dict[str, Any]], Any], operation: str, params: dict[str, Any]) -> Any:
        wru = rru = 0.0
        table = params.get("TableName", "")
        tables: Counter[str] = Counter()
        error: Exception | None = None
        result: Any = None
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            keys, _ = self._schema(raw, table)
            key = params.get("Key") or {k: params["Item"][k] for k in keys}
            result, wru, error = self._write(
                raw,
                table,
                key,
                lambda: raw(operation, params),
                new=params.get("Item") if operation == "PutItem" else None,
            )
            tables[table] += wru
        elif operation == "TransactWriteItems":
            # Check each item's current size first, run the transaction, then size the results (2x: transactional).
            items = []
            for entry in params["TransactItems"]:
                ((kind, op),) = entry.items()
                keys, gsis = self._schema(raw, op["TableName"])
                key = op.get("Key") or {k: op["Item"][k] for k in keys}
                items.append((kind, op, key, keys, gsis, self._current(raw, op["TableName"], key)))
            try:
                result = raw(operation, params)
            except Exception as exc:
                error = exc
            for kind, op, key, keys, gsis, before in items:
                after = op.get("Item") if kind == "Put" else self._current(raw, op["TableName"], key)
                if error is not None or kind == "ConditionCheck":
                    after = before
                size = max(item_size(before), item_size(after), 1)
                indexed = 0 if kind == "ConditionCheck" or error is not None else index_units(gsis, before, after, keys)
                units = 2 * (math.ceil(size / 1024) + indexed)  # transactional: twice, the indexes' writes too
                wru += units
                tables[op["TableName"]] += units
        else:
            try:
                result = raw(operation, params)
            except Exception as exc:
                error = exc
            consistent = 1.0 if params.get("ConsistentRead") else 0.5
            if operation == "GetItem":
                rru = consistent * max(1, math.ceil(item_size((result or {}).get("Item")) / 4096))
            elif operation in ("Query", "Scan"):
                total = sum(item_size(i) for i in (result or {}).get("Items", []))
                rru = consistent * max(1, math.ceil(total / 4096))
            elif operation == "TransactGetItems":
                rru = sum(
                    2 * max(1, math.ceil(item_size(r.get("Item")) / 4096)) for r in (result or {}).get("Responses", [])
                )
            elif operation == "BatchGetItem":
                for name, found in (result or {}).get("Responses", {}).items():
                    units = sum(consistent * max(1, math.ceil(item_size(i) / 4096)) for i in found)
                    rru += units
                    tables[name] += units
            tables[table] += rru
        with self.meter.lock:
            u = self.meter.ddb[_origin.get()]
            u.wru += wru
            u.rru += rru
            u.calls[operation] += 1
            for name, n in tables.items():
                if name:
                    self.meter.ddb_by_table[name] += n
                    unit = "WRU" if wru else "RRU"
                    self.meter.ddb_by_operation[f"{_origin.get()} {name.split('-')[0]} {operation} {unit}"] += n
        if error is not None:
            raise error
        return result


def functools_partial(fn: Callable[..., Any], client: Any) -> Callable[[str, dict[str, Any]], Any]:
    return lambda operation, params: fn(client, operation, params)


# -- Lambda, API and log meters ------------------------------------------------------------------------------------


def install_lambda_meter(monkeypatch: Any, meter: Meter) -> None:
    """Time every Lambda invocation moto dispatches to our handlers (after the platform's own patch)."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    from tests.aws.platform import FUNCTIONS

    dispatch: Callable[..., Any] = LambdaSimpleBackend.invoke

    def invoke(self: Any, function_name: str, *args: Any) -> Any:
        kind = next(k for k in FUNCTIONS if function_name.rsplit(":", 1)[-1].startswith(k))
        t0 = time.perf_counter()
        try:
            return dispatch(self, function_name, *args)
        finally:
            with meter.lock:
                meter.lambda_seconds[kind] += time.perf_counter() - t0
                meter.lambda_calls[kind] += 1

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)


def route_of(path: str) -> str:
    parts = [("{id}" if any(c.isdigit() for c in p) and ("_" in p or len(p) > 20) else p) for p in path.split("/")]
    return "/".join(parts)


def install_cpu_meter(monkeypatch: Any) -> None:
    """Charge CPU time to the API request whose context runs it: each step of the event loop (asyncio handles carry
    their task's context), each call the request sends to a worker thread (anyio's `to_thread.run_sync`, which the
    API uses for every port call), and, to take it back out, what moto's backends spend serving its AWS calls."""
    import asyncio.events

    import anyio.to_thread
    from moto.core.botocore_stubber import BotocoreStubber

    handle_run: Callable[..., Any] = asyncio.events.Handle._run

    def timed_handle(handle: Any) -> Any:
        context = handle._context
        if context is None:
            return handle_run(handle)
        t0 = time.thread_time()
        try:
            return handle_run(handle)
        finally:
            req = context.get(_request_cpu)  # (after the step: the request's first step is the one that sets it)
            if req is not None:
                req.cpu += time.thread_time() - t0

    monkeypatch.setattr(asyncio.events.Handle, "_run", timed_handle)
    run_sync: Callable[..., Any] = anyio.to_thread.run_sync

    async def timed_run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        req = _request_cpu.get()
        if req is None:
            return await run_sync(func, *args, **kwargs)

        def timed(*a: Any) -> Any:
            t0 = time.thread_time()
            try:
                return func(*a)
            finally:
                req.cpu += time.thread_time() - t0

        return await run_sync(timed, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", timed_run_sync)
    process_request: Callable[..., Any] = BotocoreStubber.process_request  # (after the platform's own patch)

    def timed_moto(stubber: Any, request: Any) -> Any:
        req = _request_cpu.get()
        if req is None or getattr(_uninstrumented, "on", False):  # (the meter's reads count whole, as `meter`)
            return process_request(stubber, request)
        t0 = time.thread_time()
        try:
            return process_request(stubber, request)
        finally:
            req.moto += time.thread_time() - t0

    monkeypatch.setattr(BotocoreStubber, "process_request", timed_moto)


def install_api_meter(monkeypatch: Any, meter: Meter) -> None:
    """Count the API's requests by route and caller (the sandbox: its worker, AsyncAnthropic, and the entrypoint's
    file-resource checks; the bench: Anthropic), and time the ones that are not event streams; DynamoDB units spent
    inside a stream are tagged `stream`."""
    from fastapi.routing import APIRouter
    from starlette.routing import Router

    from managed_agents.api.hot_routes import HotRoutes

    for cls in (Router, APIRouter):  # FastAPI's router has its own `app`
        monkeypatch.setattr(cls, "app", metered(cls.app, meter))
    # The event send is answered before the routers (api/hot_routes.py): metered where it is answered there (the
    # sends it passes on reach the routers, metered above), so each request is counted once.
    answer: Callable[..., Any] = HotRoutes._send_events

    async def send_events(self: Any, route: Any, sid: str, scope: Any, receive: Any, send: Any, headers: Any) -> None:
        async def dispatch(_app: Any, scope: Any, receive: Any, send: Any) -> None:
            await answer(self, route, sid, scope, receive, send, headers)

        await metered(dispatch, meter)(self, scope, receive, send)

    monkeypatch.setattr(HotRoutes, "_send_events", send_events)
    # The session read a sandbox's worker stream makes to announce the inputs with a tool use (api/sse.py): per tool
    # use, so counted per turn (`stream-inputs`), not with the stream's time-driven re-reads.
    from managed_agents.api.routes import sessions as session_routes

    announce: Callable[..., Any] = session_routes.announced_inputs_etag

    async def announced(*args: Any) -> Any:
        token = _origin.set("stream-inputs")
        try:
            return await announce(*args)
        finally:
            _origin.reset(token)

    monkeypatch.setattr(session_routes, "announced_inputs_etag", announced)


def metered(dispatch: Callable[..., Any], meter: Meter) -> Callable[..., Any]:
    async def app(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/v1/messages":  # the scripted model server is not our API
            await dispatch(self, scope, receive, send)
            return
        agent = dict(scope["headers"]).get(b"user-agent", b"").decode()
        route = route_of(scope["path"])
        # the sandbox's own requests (urllib): the file-resource check before each tool call (`/inputs`)
        sandbox = "/inputs" in route
        who = "worker" if agent.startswith("AsyncAnthropic") or sandbox else "client"
        stream = route.endswith("/stream")
        # DynamoDB units by origin: the event streams, the worker's calls, the client's sends, and the bench's own
        # polling of events.list (`client GET`, not part of the workload: the reference client streams)
        origin = "stream" if stream else f"{who}-{'send' if scope['method'] != 'GET' else 'poll'}"
        token = _origin.set(origin)
        name = f"{who} {scope['method']} {route}"
        req = None if stream else RequestCpu(name)
        cpu_token = _request_cpu.set(req)
        if stream:
            with meter.lock:
                meter.open_streams += 1
        t0 = time.perf_counter()
        try:
            await dispatch(self, scope, receive, send)
        finally:
            _origin.reset(token)
            _request_cpu.reset(cpu_token)
            with meter.lock:
                meter.open_streams -= stream
                meter.api_requests[name] += 1
                if req is not None:
                    meter.api_seconds += time.perf_counter() - t0
                    meter.request_cpu.append(req)

    return app


class LogBytes(logging.Handler):
    """Bytes Powertools would ship to CloudWatch Logs: each record as one compact JSON line."""

    def __init__(self, meter: Meter, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.meter = meter
        self.fmt = formatter

    def emit(self, record: logging.LogRecord) -> None:
        text = self.fmt.format(record) if self.fmt else record.getMessage()
        try:
            text = json.dumps(json.loads(text), separators=(",", ":"))
        except ValueError:
            pass
        with self.meter.lock:
            self.meter.log_bytes += len(text) + 1


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    window: dict[str, Any]
    wall_seconds: float
    messages: int
    model_turns: int
    tool_calls: int
    transitions: int
    executions: int
    open_streams: float  # event streams open during the window (mean of its start and end)
    event_bytes: int  # events table: item sizes + per-item overhead, all items
    event_items: int
    events: int  # events the window logged
    memory_mb: dict[str, int]
    sse_max_seconds: float
    snap_start: set[str] = field(default_factory=set)  # functions with SnapStart (from the template)
    metric_names: set[str] = field(default_factory=set)  # custom metrics the handlers published in the window
    event_bytes_per_turn: float = 0.0
    relayed: int = 0  # events-table stream records that passed the webhook relay's filter in the window
    relay_seconds: float = 0.0  # the relay handler's time over them
    requests: list[RequestCpu] = field(default_factory=list)  # the API's non-stream requests of the window


@contextmanager
def platform_run() -> Iterator[tuple[Any, Meter, Any]]:
    import pytest

    from tests.aws.platform import aws_platform
    from tests.infra.conftest import _load

    meter = Meter()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        outdir = Path(tmp) / "cdk.out"
        synth_app(outdir)
        synth = _load(outdir)
        DynamoDbUnits(meter).install(mp)
        install_api_meter(mp, meter)
        from managed_agents.observability import logger, metrics

        add_metric = metrics.add_metric

        def counted_metric(*args: Any, **kwargs: Any) -> Any:
            meter.metric_names.add(str(kwargs.get("name") or args[0]))
            return add_metric(*args, **kwargs)

        mp.setattr(metrics, "add_metric", counted_metric)
        handler = LogBytes(meter, logger.registered_formatter)
        logging.getLogger(logger.name).addHandler(handler)
        shipped = logger.registered_handler
        if isinstance(shipped, logging.StreamHandler):
            mp.setattr(shipped, "stream", open(os.devnull, "w"))  # counted above, not printed
        try:
            # the production stream poll interval (the test platform's is shorter), so stream reads per hour are real
            with aws_platform(synth, Path(tmp), env={STREAM_POLL_ENV: "0.5"}) as platform:
                install_lambda_meter(mp, meter)
                install_cpu_meter(mp)
                yield platform, meter, synth
        finally:
            logging.getLogger(logger.name).removeHandler(handler)


def synth_app(outdir: Path) -> None:
    import subprocess

    from tests.infra.conftest import JSII_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "AWS_"))}
    env.update(JSII_ENV, CDK_OUTDIR=str(outdir))
    proc = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"python app.py failed:\n{proc.stderr[-4000:]}")


def functions_by_role(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each Lambda's properties by its handler's role in the platform (from the synthesized template)."""
    names = {
        "functions.model_turn.handler.handler": "ModelTurn",
        "functions.model_turn.handler.report_failure": "ReportFailure",
        "functions.tool_wait.handler.handler": "ToolWait",
        "functions.provisioner.handler.handler": "Provisioner",
        "functions.mcp_proxy.handler.handler": "McpProxy",
        "functions.triggers.handler.handler": "Triggers",
        "functions.reaper.handler.handler": "Reaper",
        "functions.webhooks.handler.relay": "WebhookRelay",
        "functions.webhooks.handler.deliver": "WebhookDeliver",
    }
    out: dict[str, dict[str, Any]] = {}
    for res in template["Resources"].values():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        props = res["Properties"]
        handler = str(props.get("Handler", ""))
        name = names.get(handler) or ("Api" if "run.sh" in handler or "api" in handler.lower() else None)
        if name == "Api" and "/Api/StreamFunction/" in res.get("Metadata", {}).get("aws:cdk:path", ""):
            name = "ApiStream"  # GET .../events/stream has a function of its own (stacks/constructs/api.py)
        if name:
            out[name] = props
    return out


def memory_sizes(template: dict[str, Any]) -> dict[str, int]:
    """MemorySize of each Lambda by its role."""
    return {name: int(props.get("MemorySize", 128)) for name, props in functions_by_role(template).items()}


def snap_start_functions(template: dict[str, Any]) -> set[str]:
    return {
        name
        for name, props in functions_by_role(template).items()
        if props.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions"
    }


def measure(messages: int, tool_turns: int) -> Run:
    from managed_agents.settings import ServerSettings

    with platform_run() as (platform, meter, synth):
        sid = platform.session([{"type": "agent_toolset_20260401"}])

        def script(n: int) -> None:
            for i in range(tool_turns):
                command = f"echo turn-{n}-{i} >> log.txt && wc -l log.txt"
                platform.model.push({"content": [{"type": "tool_use", "name": "bash", "input": {"command": command}}]})
            platform.model.push(f"done {n}")

        script(0)  # warm-up: the sandbox task starts, the first execution runs
        platform.say(sid, "warm up")
        platform.wait_idle(sid, 1, timeout=180)
        platform.settled(1, timeout=120)
        platform.pump_webhooks()  # the warm-up's stream records
        seen = {e["executionArn"] for e in platform.executions()}
        events_before = len(platform.events(sid))
        streams_before = meter.open_streams
        before, t0 = meter.snapshot(), time.perf_counter()
        for n in range(1, messages + 1):
            script(n)
            platform.say(sid, f"message {n}")
            platform.wait_idle(sid, n + 1, timeout=180)
        executions = platform.settled(len(seen) + 1, timeout=120)
        wall = time.perf_counter() - t0
        # The webhook relay (functions/webhooks): Lambda polls the events table's stream (free for a trigger) and
        # invokes it with the records its filter passes; moto runs no event source mapping, the platform plays it.
        t_relay = time.perf_counter()
        relayed, _ = platform.pump_webhooks()
        relay_seconds = time.perf_counter() - t_relay
        window = minus(meter.snapshot(), before)
        with meter.lock:
            requests = list(meter.request_cpu[before["request_cpu"] :])
        new = [e for e in executions if e["executionArn"] not in seen]
        transitions = sum(len(platform.states(e["executionArn"])) for e in new)
        events = platform.events(sid)
        tool_calls = sum(e.type == "agent.tool_use" for e in events) - tool_turns  # minus the warm-up's
        event_bytes, event_items = table_bytes("events-")
        return Run(
            window=window,
            wall_seconds=wall,
            messages=messages,
            model_turns=messages * (tool_turns + 1),
            tool_calls=tool_calls,
            transitions=transitions,
            executions=len(new),
            open_streams=(streams_before + meter.open_streams) / 2,
            event_bytes=event_bytes,
            event_items=event_items,
            events=len(events) - events_before,
            memory_mb=memory_sizes(synth.template),
            snap_start=snap_start_functions(synth.template),
            metric_names=set(meter.metric_names),
            sse_max_seconds=ServerSettings().sse_max_seconds or 840.0,
            relayed=relayed,
            relay_seconds=relay_seconds,
            requests=requests,
        )


def table_bytes(prefix: str) -> tuple[int, int]:
    """Stored bytes and items of the tables named `prefix*` (item sizes + DynamoDB's 100-byte per-item overhead)."""
    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    total = items = 0
    _uninstrumented.on = True
    try:
        for table in (t for t in ddb.list_tables()["TableNames"] if t.startswith(prefix)):
            for page in ddb.get_paginator("scan").paginate(TableName=table):
                for item in page["Items"]:
                    total += item_size(item) + DYNAMODB_ITEM_OVERHEAD_BYTES
                    items += 1
    finally:
        _uninstrumented.on = False
    return total, items


# -- the hour ------------------------------------------------------------------------------------------------------


def cost_hour(
    run: Run,
    *,
    model_seconds: float,
    client: str,
    memory_mb: dict[str, int] | None = None,
    spot_discount: float | None = None,
    snap_start: set[str] | None = None,
    container_insights: bool = False,
    nat: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    memory = {**run.memory_mb, **(memory_mb or {})}
    snap = run.snap_start if snap_start is None else snap_start
    w = run.window
    per_turn = TURNS_PER_HOUR / run.model_turns  # window counts -> one hour of the reference workload
    hour_wall = 3600 / run.wall_seconds  # time-driven counts (heartbeats, polls, stream re-reads) -> one hour
    p = PRICES
    lambda_calls: Counter[str] = w["lambda_calls"]
    # Step Functions
    transitions_h = run.transitions * per_turn
    # Task Lambdas: handler time (+ the model's streaming time for ModelTurn: it waits for the model) x memory
    gb_s = 0.0
    task_requests = 0.0
    for fn, seconds in w["lambda_seconds"].items():
        calls_h = lambda_calls[fn] * per_turn
        secs = seconds * per_turn + (TURNS_PER_HOUR * model_seconds if fn == "ModelTurn" else 0.0)  # 1 model call/turn
        gb_s += secs * memory.get(fn, 1024) / 1024
        task_requests += calls_h
    # The webhook relay: one invocation per record its filter passes (no batching window: the records of a session's
    # status changes come seconds apart), the handler's time over them; no endpoint in the reference, no delivery.
    task_requests += run.relayed * per_turn
    gb_s += run.relay_seconds * per_turn * memory.get("WebhookRelay", 256) / 1024
    # API requests (API Gateway + the API Lambda): per-turn routes scale with turns, the worker's heartbeats/polls
    # with time; the bench's own client requests are replaced by the reference client's.
    api: Counter[str] = w["api_requests"]
    worker_turn = sum(n for r, n in api.items() if r.startswith("worker") and not r.endswith(TIME_DRIVEN_ROUTES))
    worker_time = sum(n for r, n in api.items() if r.startswith("worker") and r.endswith(TIME_DRIVEN_ROUTES))
    messages_h = TURNS_PER_HOUR / (run.model_turns / run.messages)
    streams_h = 3600 / run.sse_max_seconds  # one long-lived stream re-opened at the cap
    client_h = messages_h + (streams_h if client == "sse" else 3600 / 2.0)  # sends + (stream | a list every 2 s)
    # the window is too short to see the worker's 30 s lease heartbeats: at least what their interval implies
    worker_h = worker_turn * per_turn + max(worker_time * hour_wall, 3600 / WORKER_HEARTBEAT_SECONDS)
    requests_h = worker_h + client_h
    worker_streams = max(1.0, run.open_streams)  # the worker follows its session on an event stream
    open_streams = worker_streams + (1 if client == "sse" else 0)  # and the client, if it streams
    api_mb = memory.get("Api", 1024)
    stream_mb = memory.get("ApiStream", api_mb)
    api_request_s = w["api_seconds"] / max(1, sum(api.values()))
    api_gb_s = (
        open_streams * 3600 * stream_mb / 1024 + (requests_h - open_streams * streams_h) * api_request_s * api_mb / 1024
    )
    # DynamoDB: task and API units per turn; stream re-reads per hour of stream (measured rate x open streams)
    units = w["ddb"]
    per_turn_origins = [o for o in units if o not in ("stream", "client-poll")]  # client-poll: the bench's polling
    wru_h = sum(units[o][0] for o in per_turn_origins) * per_turn
    stream_rru_per_second = units.get("stream", (0, 0, Counter()))[1] / run.wall_seconds / worker_streams
    rru_h = sum(units[o][1] for o in per_turn_origins) * per_turn + stream_rru_per_second * 3600 * open_streams
    if client == "polling":  # an events.list every 2 s, each reading what the bench's polls read on average
        polls = sum(n for r, n in api.items() if r == "client GET /v1/sessions/{id}/events")
        rru_h += units.get("client-poll", (0, 0, Counter()))[1] / max(1, polls) * 1800
    bytes_per_event = run.event_bytes / max(1, run.event_items)
    events_h = run.events * per_turn
    stored_h = events_h * bytes_per_event
    # Logs
    invocations_h = task_requests + requests_h
    log_h = (
        w["log_bytes"] * per_turn
        + invocations_h * (LAMBDA_PLATFORM_LOG_BYTES + EMF_LOG_BYTES)
        + requests_h * ACCESS_LOG_BYTES
    )
    secret_calls = sum(n for k, n in w["calls"].items() if k.startswith("secretsmanager."))
    secrets_h = 3600 / SECRET_CACHE_SECONDS + secret_calls * per_turn
    restored_gb_h = RESTORES_PER_HOUR * sum(memory.get(fn, 128) / 1024 for fn in snap)
    metric_hours = len(run.metric_names) + (CONTAINER_INSIGHTS_METRICS if container_insights else 0)
    if container_insights:
        log_h += CONTAINER_INSIGHTS_LOG_BYTES_PER_HOUR
    # NAT: the sandbox's traffic to the API (its requests and its event stream) and its image pull
    nat_gb_h = (SANDBOX_STARTS_PER_HOUR * SANDBOX_IMAGE_GB + 2 * events_h * bytes_per_event / 1e9) if nat else 0.0
    cost = {
        "step_functions": transitions_h * p["stepfunctions_standard_per_transition"],
        "lambda_tasks": gb_s * p["lambda_arm_per_gb_second"] + task_requests * p["lambda_per_request"],
        "lambda_api": api_gb_s * p["lambda_arm_per_gb_second"] + requests_h * p["lambda_per_request"],
        "api_gateway": requests_h * p["apigateway_rest_per_request"],
        "dynamodb_requests": wru_h * p["dynamodb_per_wru"] + rru_h * p["dynamodb_per_rru"],
        "dynamodb_storage_month": stored_h / 1e9 * p["dynamodb_storage_per_gb_month"],
        "fargate_sandbox": sandbox_hour(spot_discount),
        "sandbox_public_ipv4": 0.0 if nat else p["public_ipv4_per_hour"],  # behind NAT: the NAT's address (idle)
        "cloudwatch_logs": log_h / 1e9 * p["cloudwatch_logs_ingest_per_gb"],
        "secrets_manager": secrets_h * p["secretsmanager_per_api_call"],
        "snapstart_restores": restored_gb_h * p["snapstart_restore_per_gb"],
        "custom_metrics": metric_hours * p["custom_metric_per_month"] / HOURS_PER_MONTH,
        "nat_data": nat_gb_h * p["nat_per_gb"],
    }
    counts = {
        "state_transitions": round(transitions_h),
        "task_lambda_invocations": round(task_requests),
        "task_lambda_gb_seconds": round(gb_s, 1),
        "api_requests": round(requests_h),
        "api_non_stream_requests": round(requests_h - open_streams * streams_h),
        "api_lambda_gb_seconds": round(api_gb_s, 1),
        "dynamodb_wru": round(wru_h),
        "dynamodb_rru": round(rru_h),
        "bytes_stored": round(stored_h),
        "log_bytes": round(log_h),
        "secret_reads": round(secrets_h),
        "snapstart_gb_restored": round(restored_gb_h, 2),
        "custom_metrics_published": metric_hours,
        "nat_gb": round(nat_gb_h, 3),
    }
    return cost, counts


def api_function_model(run: Run, memory_mb: int, non_stream_requests_h: float) -> dict[str, Any]:
    """The API function's non-stream requests at `memory_mb`, from the modelled duration of each request of the run
    (RequestCpu.duration): mean and p99 per request, and what an hour of them costs (duration and request fee)."""
    if not run.requests:
        return {}
    durations = sorted(r.duration(memory_mb) for r in run.requests)
    mean = sum(durations) / len(durations)
    p = PRICES
    usd = non_stream_requests_h * (mean * memory_mb / 1024 * p["lambda_arm_per_gb_second"] + p["lambda_per_request"])
    return {
        "mean_ms": round(mean * 1000, 1),
        "p50_ms": round(durations[len(durations) // 2] * 1000, 1),
        "p99_ms": round(durations[min(len(durations) - 1, math.ceil(0.99 * len(durations)) - 1)] * 1000, 1),
        "max_ms": round(durations[-1] * 1000, 1),
        "usd_per_hour": round(usd, 5),
    }


def api_requests_measured(run: Run) -> dict[str, Any]:
    """What the run measured of the API's non-stream requests: per request, CPU time (the function's own, moto's
    taken out), AWS calls, and the wall time here; by route, the mean CPU."""
    reqs = run.requests
    if not reqs:
        return {}
    n = len(reqs)
    by_route: dict[str, list[RequestCpu]] = defaultdict(list)
    for r in reqs:
        by_route[r.route].append(r)
    return {
        "requests": n,
        "mean_cpu_ms": round(sum(r.own_cpu() for r in reqs) / n * 1000, 2),
        "p99_cpu_ms": round(sorted(r.own_cpu() for r in reqs)[min(n - 1, math.ceil(0.99 * n) - 1)] * 1000, 2),
        "mean_moto_cpu_ms": round(sum(r.moto for r in reqs) / n * 1000, 2),
        "mean_aws_calls": round(sum(sum(r.calls.values()) for r in reqs) / n, 2),
        "mean_io_ms_modelled": round(sum(r.io_seconds() for r in reqs) / n * 1000, 1),
        "mean_wall_ms_here": round(run.window["api_seconds"] / n * 1000, 1),
        "cpu_ms_by_route": {
            k: round(sum(r.own_cpu() for r in v) / len(v) * 1000, 2) for k, v in sorted(by_route.items())
        },
    }


def idle_month(
    memory_mb: dict[str, int],
    snap_start: set[str],
    *,
    credentials: int = 0,
    nat_gateways: int = 0,
) -> dict[str, float]:
    """A month of a deployment with no session: what is billed whether or not anything runs."""
    p = PRICES
    reaper_runs = SECONDS_PER_MONTH / 60  # the work reaper, every minute
    reaper_gb_s = reaper_runs * REAPER_BILLED_MS / 1000 * memory_mb.get("Reaper", 256) / 1024
    return {
        "kms_vault_key": p["kms_key_per_month"],
        "secrets_model_and_admin_keys": 2 * p["secret_per_month"],
        "secrets_vault_credentials": credentials * p["secret_per_month"],
        "snapstart_cache": sum(memory_mb.get(fn, 128) / 1024 for fn in snap_start)
        * SECONDS_PER_MONTH
        * p["snapstart_cache_per_gb_second"],
        "reaper_lambda": reaper_gb_s * p["lambda_arm_per_gb_second"] + reaper_runs * p["lambda_per_request"],
        "reaper_logs_and_reads": reaper_runs
        * (LAMBDA_PLATFORM_LOG_BYTES + EMF_LOG_BYTES)
        / 1e9
        * p["cloudwatch_logs_ingest_per_gb"]
        + reaper_runs * 0.5 * p["dynamodb_per_rru"],
        "nat_gateways": nat_gateways * (p["nat_gateway_per_hour"] + p["public_ipv4_per_hour"]) * HOURS_PER_MONTH,
    }


def sandbox_hour(spot_discount: float | None = None) -> float:
    """The reference sandbox's hour: ARM64 on demand, or ARM64 at the Spot discount (Fargate Spot runs ARM64 tasks on
    platform 1.4.0+)."""
    p = PRICES
    arm = SANDBOX_VCPU * p["fargate_arm_per_vcpu_hour"] + SANDBOX_GB * p["fargate_arm_per_gb_hour"]
    return arm if spot_discount is None else (1 - spot_discount) * arm


def design_floor(spot_discount: float, *, model_seconds: float, stream_max_seconds: float) -> dict[str, Any]:
    """What the mandated design costs an active session-hour before any of our own overhead, at list prices.

    Each item is the least its component can cost: the sandbox runs the whole hour (the worker in it follows the
    session); the worker's and the client's event streams are each an API Lambda invocation held open all hour
    (API Gateway REST with response streaming in front of Lambda), at Lambda's smallest size; the sandbox's public
    IPv4 address (no NAT gateway); the ModelTurn Lambda waiting for the model's response at 128 MB; one DynamoDB
    write per event of a turn (4 events at 1 WRU, no index, no transaction). Step Functions count nothing here: many
    model turns can share an execution's three transitions.
    """
    p = PRICES
    stream = 3600 * 128 / 1024 * p["lambda_arm_per_gb_second"] + p["lambda_per_request"] * 3600 / stream_max_seconds
    besides_sandbox = {
        "two_event_streams_128mb": 2 * stream,
        "sandbox_public_ipv4": p["public_ipv4_per_hour"],
        "model_wait_128mb": TURNS_PER_HOUR * model_seconds * 128 / 1024 * p["lambda_arm_per_gb_second"],
        "four_event_writes_per_turn": TURNS_PER_HOUR * 4 * p["dynamodb_per_wru"],
    }
    on_demand, spot = sandbox_hour(None), sandbox_hour(spot_discount)
    items = {
        "sandbox_on_demand_arm64": on_demand,
        f"sandbox_spot_arm64_{spot_discount:.0%}_off": spot,
        **besides_sandbox,
    }
    rest = sum(besides_sandbox.values())
    return {
        "usd": {k: round(v, 5) for k, v in items.items()},
        "total_usd_on_demand": round(on_demand + rest, 4),
        "total_usd_spot": round(spot + rest, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2, help="measured user messages (after a warm-up one)")
    parser.add_argument("--tool-turns", type=int, default=9, help="model turns calling bash per message")
    parser.add_argument("--model-seconds", type=float, default=6.0, help="model streaming time per turn (assumed)")
    parser.add_argument("--client", choices=("sse", "polling"), default="sse", help="how the user's client follows")
    parser.add_argument("--quick", action="store_true", help="one message of 3 tool turns")
    parser.add_argument(
        "--spot-discount",
        type=float,
        default=0.7,
        help="Fargate Spot discount assumed in the what-if (AWS: 'up to 70%%'; Spot prices vary by region and time)",
    )
    args = parser.parse_args()
    if args.quick:
        args.messages, args.tool_turns = 1, 3
    logging.basicConfig(level=logging.WARNING)
    run = measure(args.messages, args.tool_turns)
    w = run.window
    turns = run.model_turns
    emit(
        bench="aws_cost_model",
        measured="per model turn, moto run",
        model_turns=turns,
        tool_calls=run.tool_calls,
        executions=run.executions,
        state_transitions=round(run.transitions / turns, 2),
        lambda_invocations={k: round(v / turns, 2) for k, v in sorted(w["lambda_calls"].items())},
        webhook_relay_invocations=round(run.relayed / turns, 2),
        lambda_handler_ms={
            k: round(v / max(1, w["lambda_calls"][k]) * 1000, 1) for k, v in sorted(w["lambda_seconds"].items())
        },
        dynamodb_calls={o: {k: round(v / turns, 2) for k, v in sorted(u[2].items())} for o, u in w["ddb"].items()},
        dynamodb_wru={o: round(u[0] / turns, 2) for o, u in w["ddb"].items()},
        dynamodb_rru={o: round(u[1] / turns, 2) for o, u in w["ddb"].items()},
        dynamodb_units_by_table={k: round(v / turns, 2) for k, v in w["ddb_by_table"].items()},
        dynamodb_units_by_operation={k: round(v / turns, 2) for k, v in sorted(w["ddb_by_operation"].items())},
        aws_calls={k: round(v / turns, 2) for k, v in sorted(w["calls"].items()) if not k.startswith("dynamodb.")},
        s3_put_bytes=round(w["s3_put_bytes"] / turns),
        api_requests=dict(sorted(w["api_requests"].items())),
        log_bytes=round(w["log_bytes"] / turns),
        events_logged_per_turn=round(run.events / turns, 2),
        bytes_stored_per_event=round(run.event_bytes / max(1, run.event_items)),
        window_seconds=round(run.wall_seconds, 1),
        memory_mb=run.memory_mb,
    )
    cost, counts = cost_hour(run, model_seconds=args.model_seconds, client=args.client)
    total = sum(cost.values())
    spot = args.spot_discount
    everything = set(run.memory_mb)
    # The sizes before the memory review (every function SnapStart, 1 GB API and ModelTurn, 256 MB streams, 512 MB
    # others), for comparison: peaks measured since are ModelTurn ~125 MB, API and streams ~78 MB, others <= 70 MB.
    before = {
        "Api": 1024,
        "ModelTurn": 1024,
        "ApiStream": 256,
        **dict.fromkeys(everything - {"Api", "ModelTurn", "ApiStream"}, 512),
    }

    def hour(**kw: Any) -> float:
        c = kw.pop("client", args.client)
        return round(sum(cost_hour(run, model_seconds=args.model_seconds, client=c, **kw)[0].values()), 4)

    spot_total = hour(spot_discount=spot)
    api_mb = run.memory_mb.get("Api", 1024)
    what_if = {
        f"sandbox_on_fargate_spot_arm64_{spot:.0%}_off": spot_total,
        "container_insights_on": hour(container_insights=True),
        "sandboxes_behind_a_nat_gateway_data_only": hour(nat=True),
        "stream_function_256mb": hour(memory_mb={"ApiStream": 256}),
        "model_turn_256mb": hour(memory_mb={"ModelTurn": 256}),
        "model_turn_1024mb": hour(memory_mb={"ModelTurn": 1024}),
        "snapstart_on_every_function": hour(snap_start=everything),
        "sizes_and_snapstart_before_this_review": hour(memory_mb=before, snap_start=everything),
        "client_polls_every_2s": hour(client="polling"),
    }
    idle = idle_month(run.memory_mb, run.snap_start)
    idle_total = sum(idle.values())
    idle_what_if = {
        "with_10_vault_credentials": idle_total + 10 * PRICES["secret_per_month"],
        "snapstart_on_every_function": sum(idle_month(run.memory_mb, everything).values()),
        "sizes_and_snapstart_before_this_review": sum(idle_month(before, everything).values()),
        "one_nat_gateway": sum(idle_month(run.memory_mb, run.snap_start, nat_gateways=1).values()),
    }
    emit(
        bench="aws_cost_model",
        per="active session-hour",
        workload=f"{TURNS_PER_HOUR} model turns/h (one every 20 s), one bash call per turn but the final answer, "
        f"{SANDBOX_VCPU:g} vCPU / {SANDBOX_GB:g} GB ARM sandbox, client follows by {args.client}",
        assumptions={
            "model_seconds_per_turn": args.model_seconds,
            "event_stream_max_seconds": run.sse_max_seconds,
            "storage": "one month of what the hour stores",
            "snapstart_restores_per_function_hour": RESTORES_PER_HOUR,
            "custom_metrics": "every metric published in the run counts a full hour against this one session",
            "spot_discount": spot,
        },
        snap_start=sorted(run.snap_start),
        memory_mb=run.memory_mb,
        counts=counts,
        usd={k: round(v, 5) for k, v in cost.items()},
        total_usd=round(total, 4),
        goal_usd=GOAL_ON_DEMAND,
        meets_goal=total <= GOAL_ON_DEMAND,
        spot_total_usd=spot_total,
        spot_goal_usd=GOAL_SPOT,
        spot_meets_goal=spot_total <= GOAL_SPOT,
        total_usd_what_if=what_if,
        api_function={
            "measured": api_requests_measured(run),
            "assumed_aws_call_seconds": {**AWS_CALL_SECONDS, "other": AWS_CALL_SECONDS_OTHER},
            "wall_time_basis_usd_per_hour": round(
                counts["api_non_stream_requests"]
                * (
                    run.window["api_seconds"]
                    / max(1, sum(run.window["api_requests"].values()))  # (as cost_hour divides it)
                    * api_mb
                    / 1024
                    * PRICES["lambda_arm_per_gb_second"]
                    + PRICES["lambda_per_request"]
                ),
                5,
            ),
            **{
                f"modelled_{mb}mb": api_function_model(run, mb, counts["api_non_stream_requests"])
                for mb in sorted({128, 256, 512, 1024, api_mb})
            },
        },
        design_floor=design_floor(spot, model_seconds=args.model_seconds, stream_max_seconds=run.sse_max_seconds),
        hosted_usd=HOSTED_PER_HOUR,
        prices=PRICES,
        prices_source=PRICES_SOURCE,
    )
    emit(
        bench="aws_cost_model",
        per="idle month (no session)",
        usd={k: round(v, 3) for k, v in idle.items()},
        total_usd=round(idle_total, 2),
        goal_usd=GOAL_IDLE_MONTH,
        meets_goal=idle_total <= GOAL_IDLE_MONTH,
        total_usd_what_if={k: round(v, 2) for k, v in idle_what_if.items()},
        note="superseded versions are deleted at each deploy (PythonFunction), so one snapshot per SnapStart function",
    )


if __name__ == "__main__":
    main()
