"""The MCP proxy: the only reader of vault credentials (architecture: "Credentials").

`McpProxy` is synchronous, like the ports and the harness: each call resolves the session's MCP server and
credential on the caller's thread (resource store, SecretStore, OAuth refresh), then runs the MCP exchange on the
proxy's own event loop thread, where warm connections live, one per (session, server). Every wait is bounded,
so a hanging server costs a caller at most the configured timeout. Revocation takes effect on the next call: the
credential is resolved every time and a connection whose credential changed is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar, cast

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, McpError, types

from managed_agents.domain.clock import Clock, SystemClock, rfc3339
from managed_agents.domain.errors import NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.mcp_proxy.connection import McpConnection
from managed_agents.mcp_proxy.content import content_blocks, tool_definition
from managed_agents.mcp_proxy.credentials import CredentialResolver, RefreshFailed, ResolvedCredential
from managed_agents.mcp_proxy.errors import AUTHENTICATION_FAILED, CONNECTION_FAILED, McpProxyError
from managed_agents.ports import Record, ResourceStore, SecretPatch, SecretStore
from managed_agents.services.vaults import merge_secret

log = logging.getLogger("managed_agents.mcp_proxy")
MAX_TOOL_PAGES = 50
T = TypeVar("T")


@dataclass(frozen=True)
class McpResult:
    """A tools/call outcome: Messages API content blocks (text, image, document) and the tool's error flag."""

    content: list[JsonObject]
    is_error: bool


@dataclass
class _Target:
    session_id: str
    server_name: str
    url: str
    vault_ids: list[str]
    credential: ResolvedCredential | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.session_id, self.server_name)


@dataclass
class _CachedTools:
    credential_id: str | None
    tools: list[JsonObject]


@dataclass
class McpProxySettings:
    connect_timeout: float = 10.0  # TCP connect + MCP initialize
    list_timeout: float = 30.0
    call_timeout: float = 120.0
    refresh_timeout: float = 15.0
    refresh_skew_seconds: float = 30.0  # refresh an OAuth token this long before it expires
    idle_seconds: float = 300.0  # a warm connection unused this long is closed
    max_connections: int = 256


class McpProxy:
    def __init__(
        self,
        resources: ResourceStore,
        secrets: SecretStore,
        clock: Clock | None = None,
        settings: McpProxySettings | None = None,
    ) -> None:
        self.resources = resources
        self.clock = clock or SystemClock()
        self.settings = settings or McpProxySettings()
        self.resolver = CredentialResolver(resources, secrets, self.clock, self.settings.refresh_timeout)
        self._lock = threading.Lock()
        self._conns: dict[tuple[str, str], McpConnection] = {}
        self._tools: dict[tuple[str, str], _CachedTools] = {}
        # The event loop thread starts on first use: a runtime that never calls an MCP server (CLI commands,
        # sessions without MCP) owns no thread that could keep the process alive at exit.
        self._portal_cm: contextlib.AbstractContextManager[BlockingPortal] | None = None
        self._portal_obj: BlockingPortal | None = None
        self._portal_lock = threading.Lock()  # not self._lock: callers reach the portal while holding that one
        self._closed = False

    @property
    def _portal(self) -> BlockingPortal:
        with self._portal_lock:
            if self._closed:
                raise RuntimeError("the MCP proxy is closed")
            if self._portal_obj is None:
                self._portal_cm = start_blocking_portal(name="mcp-proxy")
                self._portal_obj = self._portal_cm.__enter__()
            return self._portal_obj

    # --- public API ---

    def list_tools(self, session: str | Record, server_name: str) -> list[JsonObject]:
        """The server's tools as Messages API definitions (cached per session and server)."""
        target = self._target(session, server_name)
        cred_id = target.credential.credential_id if target.credential else None
        cached = self._tools.get(target.key)
        if cached is not None and cached.credential_id == cred_id:
            return [dict(t) for t in cached.tools]
        tools = self._with_auth_retry(target, self._alist_tools, self.settings.list_timeout)
        self._tools[target.key] = _CachedTools(cred_id, tools)
        return [dict(t) for t in tools]

    def call_tool(
        self,
        session: str | Record,
        server_name: str,
        tool: str,
        tool_input: JsonObject,
        *,
        timeout: float | None = None,
    ) -> McpResult:
        """Call one tool. A tool-level failure is `is_error=True`; an unusable server raises McpProxyError."""
        target = self._target(session, server_name)

        async def run(conn: McpConnection, limit: float) -> McpResult:
            try:
                result = await conn.request(
                    lambda s: s.call_tool(tool, dict(tool_input)), limit, f"tools/call {tool!r}"
                )
            except McpError as exc:
                return McpResult([{"type": "text", "text": f"MCP error {exc.error.code}: {exc.error.message}"}], True)
            return McpResult(content_blocks(result), bool(result.isError))

        return self._with_auth_retry(target, run, timeout or self.settings.call_timeout)

    def close_session(self, session_id: str) -> None:
        """Drop a session's warm connections and cached tool lists (session ended or deleted)."""
        with self._lock:
            keys = [k for k in self._conns if k[0] == session_id]
            conns = [self._conns.pop(k) for k in keys]
            for k in [k for k in self._tools if k[0] == session_id]:
                self._tools.pop(k, None)
        for conn in conns:
            self._close_soon(conn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns.values())
            self._conns.clear()
        with self._portal_lock:
            portal, portal_cm = self._portal_obj, self._portal_cm
        if portal is None or portal_cm is None:
            return
        for conn in conns:
            try:
                portal.call(conn.close, 1.0)
            except Exception:  # pragma: no cover - shutting down anyway
                log.debug("error closing an MCP connection", exc_info=True)
        portal_cm.__exit__(None, None, None)

    def connection_count(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns.values() if c.alive)

    # --- resolution ---

    def _session_record(self, session: str | Record) -> Record:
        if isinstance(session, Record):
            return session
        rec = self.resources.get_by_id("session", session)
        if rec is None or rec.doc.get("_deleted"):
            raise NotFound(f"session {session!r} not found")
        return rec

    def _target(self, session: str | Record, server_name: str) -> _Target:
        rec = self._session_record(session)
        agent = cast(JsonObject, rec.doc.get("agent") or {})
        servers = cast(list[JsonObject], agent.get("mcp_servers") or [])
        url = next((str(s["url"]) for s in servers if s.get("name") == server_name), None)
        if url is None:
            names = ", ".join(repr(str(s.get("name"))) for s in servers) or "none"
            raise McpProxyError(
                CONNECTION_FAILED,
                f"the session's agent has no MCP server named {server_name!r} (it has: {names})",
                server_name,
            )
        vault_ids = [str(v) for v in cast(list[object], rec.doc.get("vault_ids") or [])]
        cred = self.resolver.find(rec.workspace_id, vault_ids, url)
        target = _Target(rec.id, server_name, url, vault_ids, cred)
        if cred is not None and cred.can_refresh:
            if cred.expiring(self.clock.now(), timedelta(seconds=self.settings.refresh_skew_seconds)):
                try:
                    target.credential = self.resolver.refresh(cred)
                except RefreshFailed as exc:
                    if cred.expiring(self.clock.now(), timedelta(0)):
                        raise self._auth_error(
                            target, f"its access token expired and refreshing it failed: {exc.message}"
                        ) from None
                    log.warning("early token refresh failed", extra={"credential_id": cred.credential_id})
        return target

    def _auth_error(self, target: _Target, reason: str) -> McpProxyError:
        cred = target.credential
        who = cred.describe() if cred else "no credential"
        return McpProxyError(
            AUTHENTICATION_FAILED,
            f"MCP server {target.server_name!r} ({target.url}): {who}: {reason}",
            target.server_name,
        )

    def _explain(self, target: _Target, exc: McpProxyError) -> McpProxyError:
        if exc.error_type != AUTHENTICATION_FAILED:
            return exc
        if target.credential is None:
            searched = ", ".join(target.vault_ids) or "none"
            hint = f"; the session's vaults ({searched}) hold no active credential for this server URL"
        else:
            hint = f" (used {target.credential.describe()})"
        return McpProxyError(exc.error_type, exc.message + hint, exc.server_name)

    # --- connections ---

    def _with_auth_retry(
        self, target: _Target, fn: Callable[[McpConnection, float], Awaitable[T]], timeout: float
    ) -> T:
        """Run fn on the target's warm connection; after a 401/403, refresh an OAuth token once and retry.

        A retried tools/call is safe: the server refused the first request before running it.
        """
        for attempt in range(2):
            try:
                conn = self._connection(target)
                return self._portal.call(fn, conn, timeout)
            except McpProxyError as exc:
                cred = target.credential
                if exc.error_type == AUTHENTICATION_FAILED and attempt == 0 and cred is not None and cred.can_refresh:
                    try:
                        target.credential = self.resolver.refresh(cred, failed_token=cred.token)
                    except RefreshFailed as refresh_exc:
                        raise self._auth_error(
                            target,
                            f"the server refused the access token and refreshing it failed: {refresh_exc.message}",
                        ) from None
                    continue
                log.warning(
                    "MCP request failed",
                    extra={
                        "session_id": target.session_id,
                        "mcp_server_name": target.server_name,
                        "error": exc.error_type,
                    },
                )
                raise self._explain(target, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, target: _Target) -> McpConnection:
        cred = target.credential
        cred_id = cred.credential_id if cred else None
        token = cred.token if cred else None
        stale: list[McpConnection] = []
        with self._lock:
            if self._closed:
                raise McpProxyError(CONNECTION_FAILED, "the MCP proxy is shut down", target.server_name)
            conn = self._conns.get(target.key)
            if conn is not None and (conn.dead or conn.credential_id != cred_id or conn.url != target.url):
                stale.append(self._conns.pop(target.key))
                conn = None
            if conn is not None:
                conn.auth.token = token  # a refreshed token takes over the warm connection
            else:
                key = target.key
                conn = self._portal.call(self._new_connection, target, cred_id, token, cred)
                self._conns[key] = conn
                self._portal.start_task_soon(conn.run)
            stale.extend(self._evict_locked(keep=target.key))
        for old in stale:
            self._close_soon(old)
        self._portal.call(conn.wait_ready)
        return conn

    def _new_connection(
        self, target: _Target, cred_id: str | None, token: str | None, cred: ResolvedCredential | None
    ) -> McpConnection:
        key = target.key

        def tools_changed() -> None:
            self._tools.pop(key, None)

        return McpConnection(
            target.url,
            target.server_name,
            token,
            credential_id=cred_id,
            secrets=cred.secret_values() if cred else [],
            connect_timeout=self.settings.connect_timeout,
            read_timeout=max(self.settings.call_timeout, self.settings.list_timeout) + 30,
            on_tools_changed=tools_changed,
        )

    def _evict_locked(self, keep: tuple[str, str]) -> list[McpConnection]:
        now = time.monotonic()
        out: list[McpConnection] = []
        for key, conn in list(self._conns.items()):
            if key != keep and (conn.dead or now - conn.last_used > self.settings.idle_seconds):
                out.append(self._conns.pop(key))
        if len(self._conns) > self.settings.max_connections:
            by_age = sorted((c.last_used, k) for k, c in self._conns.items() if k != keep)
            for _, key in by_age[: len(self._conns) - self.settings.max_connections]:
                out.append(self._conns.pop(key))
        return out

    def _close_soon(self, conn: McpConnection) -> None:
        if not self._closed:
            self._portal.start_task_soon(conn.close)

    async def _alist_tools(self, conn: McpConnection, limit: float) -> list[JsonObject]:
        async def all_pages(session: ClientSession) -> list[types.Tool]:
            tools: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(MAX_TOOL_PAGES):
                page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                tools.extend(page.tools)
                cursor = page.nextCursor
                if not cursor:
                    break
            return tools

        try:
            tools = await conn.request(all_pages, limit, "tools/list")
        except McpError as exc:
            raise McpProxyError(
                CONNECTION_FAILED,
                f"MCP server {conn.server_name!r} ({conn.url}) refused tools/list: {exc.error.message[:200]}",
                conn.server_name,
            ) from None
        return [tool_definition(t) for t in tools]

    # --- credential secret writes (ports.CredentialSecrets) ---

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        """Create a credential's secret or replace its whole value, serialized with this proxy's OAuth refreshes of
        it (a refresh that read the old value does not write it back over the new one in this process)."""
        with self._secret_lock(name):
            self.resolver.secrets.put(name, value)

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        """Apply a credential update to its stored secret, serialized with this proxy's OAuth refreshes of it."""
        with self._secret_lock(name):
            return merge_secret(self.resolver.secrets, name, patch)

    def _secret_lock(self, name: str) -> threading.Lock:
        """The lock the resolver's OAuth refreshes of this credential hold (secret names end with its id)."""
        return self.resolver._lock(name.rsplit("/", 1)[-1])

    # --- mcp_oauth_validate (services.vaults.CredentialProber) ---

    def validate_credential(self, rec: Record) -> JsonObject:
        """Probe the credential's MCP server (initialize, tools/list); on 401/403 try one refresh and probe again."""
        cred = self.resolver.load(rec)
        auth = cast(JsonObject, rec.doc["auth"])
        out: JsonObject = {
            "type": "vault_credential_validation",
            "credential_id": rec.id,
            "vault_id": str(rec.doc["vault_id"]),
            "status": "unknown",
            "has_refresh_token": bool(cred and cred.secret.get("refresh_token")),
            "mcp_probe": None,
            "refresh": None,
            "validated_at": "",
        }
        if cred is None:
            out["status"] = "invalid"
            out["validated_at"] = rfc3339(self.clock.now())
            return out
        url = str(auth["mcp_server_url"])
        probe = self._probe(url, cred)
        if probe is not None and probe[0] == "auth":
            if not cred.can_refresh:
                out["refresh"] = {"status": "no_refresh_token", "http_response": None}
            else:
                try:
                    cred = self.resolver.refresh(cred, failed_token=cred.token)
                    out["refresh"] = {"status": "succeeded", "http_response": None}
                    probe = self._probe(url, cred)
                except RefreshFailed as exc:
                    out["refresh"] = {
                        "status": exc.status,
                        "http_response": exc.http_response.wire() if exc.http_response else None,
                    }
        if probe is None:
            out["status"] = "valid"
        else:
            kind, method, http = probe
            out["status"] = "invalid" if kind == "auth" else "unknown"
            out["mcp_probe"] = {"method": method, "http_response": http}
        out["validated_at"] = rfc3339(self.clock.now())
        return out

    def _probe(self, url: str, cred: ResolvedCredential) -> tuple[str, str, JsonObject | None] | None:
        """None when initialize and tools/list succeed, else (auth|connection, failing method, http response)."""
        target = _Target("_probe", "probe", url, [], cred)
        conn = self._portal.call(self._new_connection, target, cred.credential_id, cred.token, cred)
        self._portal.start_task_soon(conn.run)
        try:
            self._portal.call(conn.wait_ready)
            self._portal.call(self._alist_tools, conn, self.settings.list_timeout)
            return None
        except McpProxyError as exc:
            http = conn.error_response.wire() if conn.error_response else None
            method = conn.step if conn.step in ("initialize", "tools/list") else "initialize"
            return ("auth" if exc.error_type == AUTHENTICATION_FAILED else "connection", method, http)
        finally:
            self._portal.call(conn.close, 1.0)
