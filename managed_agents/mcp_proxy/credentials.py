"""Which credential a session uses for an MCP server, and OAuth token refresh with write-back.

Matching (api-reference §2.4 [inferred/docs]): the session's `vault_ids`, in order, are searched for an active
credential (static_bearer or mcp_oauth) whose normalized `mcp_server_url` equals the server's URL; archived or
missing vaults are skipped. The first match wins.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, cast

import httpx

from managed_agents.domain.clock import Clock, parse_rfc3339, rfc3339
from managed_agents.domain.events import JsonObject
from managed_agents.ports import ListQuery, OutboxEntry, Record, ResourceStore, SecretStore
from managed_agents.services.common import Services
from managed_agents.services.records import mutate
from managed_agents.services.vaults import (
    CREDENTIAL,
    MCP_AUTH_TYPES,
    REFRESH_FAILED,
    VAULT,
    credential_data,
    normalize_server_url,
)

REDACTED = "[redacted]"
MAX_CAPTURED_BODY = 2048
_SECRET_KEYS = ("token", "secret", "password", "assertion", "code")
log = logging.getLogger("managed_agents.mcp_proxy")


@dataclass
class ResolvedCredential:
    credential_id: str
    vault_id: str
    workspace_id: str
    auth_type: str
    secret_name: str
    secret: dict[str, str]
    expires_at: datetime | None
    refresh: JsonObject | None

    @property
    def token(self) -> str:
        return self.secret.get("token" if self.auth_type == "static_bearer" else "access_token", "")

    @property
    def can_refresh(self) -> bool:
        return self.refresh is not None and bool(self.secret.get("refresh_token"))

    def expiring(self, now: datetime, skew: timedelta) -> bool:
        return self.expires_at is not None and self.expires_at - skew <= now

    def secret_values(self) -> list[str]:
        return [v for v in self.secret.values() if len(v) >= 4 and v not in (self.auth_type,)]

    def describe(self) -> str:
        return f"credential {self.credential_id} of vault {self.vault_id}"


@dataclass
class HttpCapture:
    """An HTTP error response as the validation result reports it (body scrubbed and truncated)."""

    status_code: int
    content_type: str
    body: str
    body_truncated: bool

    def wire(self) -> JsonObject:
        return {
            "status_code": self.status_code,
            "content_type": self.content_type,
            "body": self.body,
            "body_truncated": self.body_truncated,
        }


RefreshStatus = Literal["succeeded", "failed", "connect_error", "no_refresh_token"]


class RefreshFailed(Exception):
    def __init__(self, status: RefreshStatus, message: str, http_response: HttpCapture | None = None) -> None:
        super().__init__(message)
        self.status: RefreshStatus = status
        self.message = message
        self.http_response = http_response


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value, and the values of token-like JSON keys, with a marker."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        text = json.dumps(
            {k: (REDACTED if any(s in k.lower() for s in _SECRET_KEYS) else v) for k, v in parsed.items()},
            ensure_ascii=False,
        )
    for value in sorted(set(secrets), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


def capture(status_code: int, content_type: str, body: str, secrets: Iterable[str]) -> HttpCapture:
    clean = scrub(body, secrets)
    return HttpCapture(status_code, content_type, clean[:MAX_CAPTURED_BODY], len(clean) > MAX_CAPTURED_BODY)


@dataclass
class CredentialResolver:
    resources: ResourceStore
    secrets: SecretStore
    clock: Clock
    refresh_timeout: float = 15.0
    # where a failed refresh records `vault_credential.refresh_failed` (Services.events; None: no webhooks)
    webhooks: Services | None = None
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def _lock(self, credential_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(credential_id, threading.Lock())

    def load(self, rec: Record) -> ResolvedCredential | None:
        """The credential with its secret, or None when it is archived or its secret is gone."""
        if rec.archived:
            return None
        auth = cast(JsonObject, rec.doc["auth"])
        if auth.get("type") not in MCP_AUTH_TYPES:
            return None
        name = str(rec.doc["_secret"])
        secret = self.secrets.get(name)
        if secret is None:
            return None
        expires = secret.get("expires_at") or cast(str | None, auth.get("expires_at"))
        return ResolvedCredential(
            credential_id=rec.id,
            vault_id=str(rec.doc["vault_id"]),
            workspace_id=rec.workspace_id,
            auth_type=str(auth["type"]),
            secret_name=name,
            secret=secret,
            expires_at=parse_rfc3339(expires) if expires else None,
            refresh=cast(JsonObject | None, auth.get("refresh")),
        )

    def find(self, workspace_id: str, vault_ids: Sequence[str], server_url: str) -> ResolvedCredential | None:
        url = normalize_server_url(server_url)
        for vid in vault_ids:
            vault = self.resources.get(VAULT.name, workspace_id, vid)
            if vault is None or vault.archived:
                continue
            q = ListQuery(limit=100, order="asc")
            q.equals["vault_id"] = vid
            q.equals["mcp_server_url"] = url
            rows, _ = self.resources.list_records(CREDENTIAL.name, workspace_id, q)
            for rec in rows:
                cred = self.load(rec)
                if cred is not None:
                    return cred
        return None

    def refresh(self, cred: ResolvedCredential, failed_token: str | None = None) -> ResolvedCredential:
        """Exchange the refresh token for a new access token and store it; RefreshFailed when that cannot be done.

        Serialized per credential: a caller that waited while another refreshed uses that result instead of
        spending the refresh token again.
        """
        if not cred.can_refresh or cred.refresh is None:
            raise RefreshFailed("no_refresh_token", f"{cred.describe()} has no refresh token configured")
        with self._lock(cred.credential_id):
            rec = self.resources.get(CREDENTIAL.name, cred.workspace_id, cred.credential_id)
            current = self.load(rec) if rec is not None else None
            if rec is None or current is None:
                raise RefreshFailed("failed", f"{cred.describe()} was archived or deleted")
            used = failed_token if failed_token is not None else cred.token
            if current.token != used and not current.expiring(self.clock.now(), timedelta(0)):
                return current
            assert current.refresh is not None
            try:
                tokens = self._exchange(current)
            except RefreshFailed:
                self._failed(rec)
                raise
            new_secret = dict(current.secret)
            new_secret["access_token"] = str(tokens["access_token"])
            if isinstance(tokens.get("refresh_token"), str) and tokens["refresh_token"]:
                new_secret["refresh_token"] = str(tokens["refresh_token"])
            expires_at: str | None = None
            expires_in = tokens.get("expires_in")
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
                expires_at = rfc3339(self.clock.now() + timedelta(seconds=float(expires_in)))
                new_secret["expires_at"] = expires_at
            else:
                new_secret.pop("expires_at", None)
            self.secrets.put(current.secret_name, new_secret)

            def change(r: Record) -> None:
                cast(JsonObject, r.doc["auth"])["expires_at"] = expires_at
                r.doc.pop(REFRESH_FAILED, None)  # (the next failure is reported again)

            try:
                after = mutate(self.resources, rec, change)
            except Exception:
                after = None
            if after is None or after.archived:  # archived while we refreshed: do not resurrect the purged secret
                self.secrets.delete(current.secret_name)
                raise RefreshFailed("failed", f"{cred.describe()} was archived or deleted")
            refreshed = self.load(after)
            if refreshed is None:
                raise RefreshFailed("failed", f"{cred.describe()} was archived or deleted")
            return refreshed

    def _failed(self, rec: Record) -> None:
        """Mark the credential's refresh failed, with `vault_credential.refresh_failed` in the same write: once per
        failure episode (until a refresh succeeds), not at every call that tries again. A failure to record it is
        logged: the caller reports the refresh's own failure."""
        if rec.doc.get(REFRESH_FAILED):
            return
        svc = self.webhooks
        recorded: list[OutboxEntry] = []

        def change(r: Record) -> None:
            r.doc[REFRESH_FAILED] = rfc3339(self.clock.now())

        def events(before: Record, after: Record) -> list[OutboxEntry]:
            recorded[:] = []
            if svc is not None and not before.doc.get(REFRESH_FAILED) and not before.archived:
                type_ = "vault_credential.refresh_failed"
                recorded[:] = svc.events(after.workspace_id, type_, after.id, credential_data(after))
            return recorded

        try:
            mutate(self.resources, rec, change, events=events)
        except Exception:
            log.exception("could not record a failed refresh of credential %s", rec.id)
            return
        if svc is not None:
            svc.recorded(recorded)

    def _exchange(self, cred: ResolvedCredential) -> JsonObject:
        refresh = cast(JsonObject, cred.refresh)
        endpoint = str(refresh["token_endpoint"])
        method = str(cast(JsonObject, refresh["token_endpoint_auth"])["type"])
        data = {"grant_type": "refresh_token", "refresh_token": cred.secret["refresh_token"]}
        auth: httpx.BasicAuth | None = None
        if method == "client_secret_basic":
            auth = httpx.BasicAuth(str(refresh["client_id"]), cred.secret.get("client_secret", ""))
        else:
            data["client_id"] = str(refresh["client_id"])
            if method == "client_secret_post":
                data["client_secret"] = cred.secret.get("client_secret", "")
        if refresh.get("scope"):
            data["scope"] = str(refresh["scope"])
        if refresh.get("resource"):
            data["resource"] = str(refresh["resource"])
        try:
            resp = httpx.post(
                endpoint,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.refresh_timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise RefreshFailed(
                "connect_error", f"the token endpoint {endpoint} could not be reached ({type(exc).__name__})"
            ) from None
        secrets = cred.secret_values()
        if resp.status_code != 200:
            cap = capture(resp.status_code, resp.headers.get("content-type", ""), resp.text, secrets)
            code = ""
            try:
                body = resp.json()
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    code = f", error {scrub(body['error'], secrets)[:100]!r}"
            except ValueError:
                pass
            raise RefreshFailed(
                "failed", f"the token endpoint {endpoint} refused the refresh (HTTP {resp.status_code}{code})", cap
            )
        try:
            tokens = resp.json()
        except ValueError:
            tokens = None
        if (
            not isinstance(tokens, dict)
            or not isinstance(tokens.get("access_token"), str)
            or not tokens["access_token"]
        ):
            cap = capture(resp.status_code, resp.headers.get("content-type", ""), resp.text, secrets)
            raise RefreshFailed("failed", f"the token endpoint {endpoint} answered without an access_token", cap)
        return cast(JsonObject, tokens)
