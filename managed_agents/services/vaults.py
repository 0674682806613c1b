"""Vaults and credentials (api-reference §2.4; architecture: "Credentials").

The resources store holds each credential's wire document with the secrets stripped; the secret fields live only
in the SecretStore under `vaults/<vault_id>/<credential_id>`. Decisions where the SDK is silent ([inferred]):

* one active credential per `mcp_server_url` (static_bearer, mcp_oauth) or per `secret_name`
  (environment_variable) in a vault: a second one is a 409 (the public docs state it for URLs);
* at most 20 active credentials per vault (public docs), else 400;
* archiving a credential purges its secret (the record stays readable); archiving a vault archives its
  credentials; deleting a vault deletes its credentials; archived credentials cannot be updated or validated;
* an explicit `null` for a secret field on update is a 400 (a credential cannot lose its token); `refresh: null`
  removes the refresh configuration; `refresh.scope: ""` clears the scope, `null` keeps it;
* `mcp_server_url` / `token_endpoint` must be http(s) URLs without user info or fragment; plain http is accepted
  because the embedded runtime and its tests serve MCP on loopback.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Protocol, cast
from urllib.parse import urlsplit, urlunsplit

from managed_agents.domain.clock import rfc3339
from managed_agents.domain.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from managed_agents.domain.events import JsonObject
from managed_agents.domain.ids import new_ulid
from managed_agents.ports import CredentialSecrets, ListQuery, Record, SecretPatch, SecretStore, SecretStoreError
from managed_agents.services.common import Services, render
from managed_agents.services.crud import Collection, Kind, Page, assign, assign_metadata
from managed_agents.wire.vaults import (
    CredentialCreateParams,
    CredentialUpdateParams,
    EnvironmentVariableCreateParams,
    EnvironmentVariableUpdateParams,
    InjectionLocationParams,
    LimitedCredentialNetworking,
    McpOAuthCreateParams,
    McpOAuthUpdateParams,
    StaticBearerCreateParams,
    StaticBearerUpdateParams,
    TokenEndpointAuthNone,
    UnrestrictedCredentialNetworking,
    VaultCreateParams,
    VaultUpdateParams,
)

VAULT = Kind(
    "vault", lambda: VAULT_PREFIX + "01" + new_ulid(), not_found_code="vault_not_found", archived_code="vault_archived"
)
CREDENTIAL = Kind(
    "vault_credential",
    lambda: CREDENTIAL_PREFIX + "01" + new_ulid(),
    noun="credential",
    not_found_code="vault_credential_not_found",
    archived_code="vault_credential_archived",
)
VAULT_PREFIX = "vlt_"
CREDENTIAL_PREFIX = "vcrd_"
MAX_ACTIVE_CREDENTIALS = 20
MCP_AUTH_TYPES = ("static_bearer", "mcp_oauth")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
log = logging.getLogger("managed_agents.vaults")


class CredentialProber(Protocol):
    """Live-probes an mcp_oauth credential against its MCP server (the MCP proxy implements it)."""

    def validate_credential(self, rec: Record) -> JsonObject: ...


class SecretRemover(Protocol):
    """What the vault service does to stored secrets itself: purge them (archive, delete, a failed create).

    Deleting a Secrets Manager secret needs no KMS key, so on AWS the API deletes directly; every write goes through
    `CredentialSecrets` (the MCP proxy Lambda there), because writing a value encrypted with the vault key needs
    `kms:Decrypt`, which the key policy allows the proxy alone."""

    def delete(self, name: str) -> bool: ...


class StoreCredentialSecrets:
    """`CredentialSecrets` in-process, on a SecretStore this process may read (the embedded runtime)."""

    def __init__(self, secrets: SecretStore) -> None:
        self.secrets = secrets

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        self.secrets.put(name, value)

    def merge_update(self, name: str, patch: SecretPatch) -> bool:
        return merge_secret(self.secrets, name, patch)


def merge_secret(secrets: SecretStore, name: str, patch: SecretPatch) -> bool:
    """Read, patch and write back one secret (no write when nothing changes); False when none is stored."""
    current = secrets.get(name)
    if current is None:
        return False
    updated = patch.apply(current)
    if updated != current:
        secrets.put(name, updated)
    return True


# an mcp_oauth credential's refreshes have failed since then (mcp_proxy/credentials.py; vault_credential.refresh_failed
# was sent once for it); cleared by a refresh that succeeds and by new tokens
REFRESH_FAILED = "_refresh_failed_at"


def credential_data(rec: Record) -> dict[str, str]:
    """What a credential's webhook payloads carry besides its id: its vault."""
    return {"vault_id": str(rec.attrs["vault_id"])}


def secret_name(vault_id: str, credential_id: str) -> str:
    return f"vaults/{vault_id}/{credential_id}"


def check_http_url(field: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"{field}: not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{field}: must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(f"{field}: must not carry user info; put credentials in the credential's auth")
    if parts.fragment:
        raise InvalidRequest(f"{field}: must not have a fragment")
    if port == 0:
        raise InvalidRequest(f"{field}: port 0 is not a valid port")
    return url


def normalize_server_url(url: str) -> str:
    """The form credential matching compares: lower-case scheme and host, no default port, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if (
        port is not None
        and not (parts.scheme == "http" and port == 80)
        and not (parts.scheme == "https" and port == 443)
    ):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), host, path, parts.query, ""))


def _check_allowed_host(i: int, host: str) -> str:
    where = f"auth.networking.allowed_hosts[{i}]"
    if any(c in host for c in "/:@?#") or host.startswith("["):
        raise InvalidRequest(f"{where}: must be a bare hostname, an IPv4 address or a *. wildcard (no URL or port)")
    try:
        ipaddress.IPv4Address(host)
        return host
    except ValueError:
        pass
    name = host[2:] if host.startswith("*.") else host
    labels = name.split(".")
    if not name or not all(_HOST_LABEL.match(label) for label in labels):
        raise InvalidRequest(f"{where}: {host[:100]!r} is not a hostname, an IPv4 address or a *. wildcard")
    return host.lower()


def _future(field: str, ts: datetime | None, now: datetime) -> str | None:
    if ts is None:
        return None
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if aware <= now:
        raise InvalidRequest(f"{field}: must be in the future")
    return rfc3339(aware)


def _networking(net: UnrestrictedCredentialNetworking | LimitedCredentialNetworking) -> JsonObject:
    if isinstance(net, LimitedCredentialNetworking):
        return {
            "type": "limited",
            "allowed_hosts": [_check_allowed_host(i, h) for i, h in enumerate(net.allowed_hosts)],
        }
    return {"type": "unrestricted"}


def _injection(current: JsonObject, change: InjectionLocationParams | None) -> JsonObject:
    out = dict(current)
    if change is not None:
        if change.header is not None:
            out["header"] = change.header
        if change.body is not None:
            out["body"] = change.body
    if not (out.get("header") or out.get("body")):
        raise InvalidRequest("auth.injection_location: at least one of header and body must be enabled")
    return out


class VaultService:
    """Stored secrets are written (a new credential's secret, a partial update merged into it) through
    `credential_secrets`: in-process on `secrets` by default, the MCP proxy Lambda on AWS (architecture:
    "Credentials": only the MCP proxy reads them, and only it may use the vault key). `secrets` is only deleted from
    here."""

    def __init__(
        self,
        svc: Services,
        secrets: SecretRemover,
        credential_secrets: CredentialSecrets,
        *,
        prober: CredentialProber | None = None,
    ) -> None:
        self.svc = svc
        self.vaults = Collection(svc, VAULT)
        # (a credential's webhook events name its vault: api-reference §2.11)
        self.credentials = Collection(svc, CREDENTIAL, event_data=credential_data)
        self.secrets = secrets
        self.prober = prober
        self.credential_secrets = credential_secrets

    # --- vaults ---

    def create(self, ws: str, params: VaultCreateParams) -> JsonObject:
        return self.vaults.create(ws, {"display_name": params.display_name, "metadata": dict(params.metadata)})

    def vault_record(self, ws: str, vault_id: str) -> Record:
        return self.vaults.record(ws, vault_id)

    def get(self, ws: str, vault_id: str) -> JsonObject:
        return self.vaults.get(ws, vault_id)

    def update(self, ws: str, vault_id: str, params: VaultUpdateParams) -> JsonObject:
        def edit(doc: JsonObject) -> None:
            assign(doc, params, ("display_name",), required=("display_name",))
            assign_metadata(doc, params, null_clears=False)

        return self.vaults.update(ws, vault_id, edit)

    def list_vaults(self, ws: str, query: ListQuery) -> Page:
        return self.vaults.list(ws, query)

    def archive(self, ws: str, vault_id: str) -> JsonObject:
        rec = self.vault_record(ws, vault_id)
        for cred in list(self._credentials_of(ws, vault_id, include_archived=False)):
            self._archive_credential(cred)
        return render(self.vaults.archive_record(rec).doc)

    def delete(self, ws: str, vault_id: str) -> JsonObject:
        self.vault_record(ws, vault_id)
        for cred in list(self._credentials_of(ws, vault_id, include_archived=True)):
            self._delete_credential(cred)
        return self.vaults.delete(ws, vault_id)

    def check_vault_ids(self, ws: str, vault_ids: list[str], *, field: str = "vault_ids") -> None:
        """For session create: every referenced vault exists in the workspace and is not archived."""
        for i, vid in enumerate(vault_ids):
            rec = self.svc.resources.get(VAULT.name, ws, vid)
            if rec is None:
                raise NotFound(f"{field}[{i}]: vault {vid!r} not found", error_code="vault_not_found")
            if rec.archived:
                raise InvalidRequest(f"{field}[{i}]: vault {vid!r} is archived", error_code="vault_archived")

    # --- credentials ---

    def _credentials_of(self, ws: str, vault_id: str, *, include_archived: bool) -> Iterator[Record]:
        return self.credentials.iterate(ws, include_archived=include_archived, vault_id=vault_id)

    def credential_record(self, ws: str, vault_id: str, credential_id: str) -> Record:
        self.vault_record(ws, vault_id)
        rec = self.svc.resources.get(CREDENTIAL.name, ws, credential_id)
        if rec is None or rec.attrs.get("vault_id") != vault_id:
            raise NotFound(
                f"credential {credential_id!r} not found in vault {vault_id!r}", error_code="vault_credential_not_found"
            )
        return rec

    def create_credential(self, ws: str, vault_id: str, params: CredentialCreateParams) -> JsonObject:
        vault = self.vault_record(ws, vault_id)
        if vault.archived:
            raise InvalidRequest(
                f"vault {vault_id!r} is archived; credentials cannot be added to it", error_code="vault_archived"
            )
        now = self.svc.clock.now()
        cid = CREDENTIAL.new_id()
        name = secret_name(vault_id, cid)
        auth, secret, attrs = self._new_auth(params, now)
        active = list(self._credentials_of(ws, vault_id, include_archived=False))
        if len(active) >= MAX_ACTIVE_CREDENTIALS:
            raise InvalidRequest(
                f"vault {vault_id!r} already holds {MAX_ACTIVE_CREDENTIALS} active credentials, the maximum;"
                " archive or delete one first"
            )
        for other in active:
            for key in ("mcp_server_url", "secret_name"):
                if attrs.get(key) is not None and other.attrs.get(key) == attrs[key]:
                    raise Conflict(
                        f"vault {vault_id!r} already has an active credential for this {key} ({other.id});"
                        " update it, or archive it before adding another"
                    )
        fields: JsonObject = {
            "vault_id": vault_id,
            "display_name": params.display_name,
            "auth": auth,
            "metadata": dict(params.metadata),
            "_secret": name,
        }
        try:
            try:
                self.credential_secrets.put_secret(name, secret)
            except SecretStoreError as exc:
                raise ServiceUnavailable(f"credential {cid!r}: its secret could not be stored: {exc}") from exc
            rec = self.credentials.insert(ws, fields, attrs={"vault_id": vault_id, **attrs}, id_=cid)
        except BaseException:
            # The credential id is new, so whatever stands under its name is this call's, whether the write failed
            # before or after storing it (a proxy that did not answer may have stored it): purge it, never leave a
            # secret without its record.
            try:
                self.secrets.delete(name)
            except Exception as cleanup:  # the original failure is the one to report; this one is only logged
                log.warning(
                    "could not purge the secret of a credential that was not created",
                    extra={"credential_id": cid, "error": type(cleanup).__name__},
                )
            raise
        return render(rec.doc)

    def _new_auth(
        self, params: CredentialCreateParams, now: datetime
    ) -> tuple[JsonObject, dict[str, str], dict[str, str | int | None]]:
        a = params.auth
        if isinstance(a, StaticBearerCreateParams):
            url = check_http_url("auth.mcp_server_url", a.mcp_server_url)
            return (
                {"type": "static_bearer", "mcp_server_url": url},
                {"type": "static_bearer", "token": a.token},
                {"auth_type": a.type, "mcp_server_url": normalize_server_url(url)},
            )
        if isinstance(a, McpOAuthCreateParams):
            url = check_http_url("auth.mcp_server_url", a.mcp_server_url)
            expires_at = _future("auth.expires_at", a.expires_at, now)
            auth: JsonObject = {"type": "mcp_oauth", "mcp_server_url": url, "expires_at": expires_at, "refresh": None}
            secret = {"type": "mcp_oauth", "access_token": a.access_token}
            if expires_at:
                secret["expires_at"] = expires_at
            if a.refresh is not None:
                r = a.refresh
                check_http_url("auth.refresh.token_endpoint", r.token_endpoint)
                auth["refresh"] = {
                    "client_id": r.client_id,
                    "token_endpoint": r.token_endpoint,
                    "token_endpoint_auth": {"type": r.token_endpoint_auth.type},
                    "resource": r.resource,
                    "scope": r.scope or None,
                }
                secret["refresh_token"] = r.refresh_token
                if not isinstance(r.token_endpoint_auth, TokenEndpointAuthNone):
                    secret["client_secret"] = r.token_endpoint_auth.client_secret
            return auth, secret, {"auth_type": a.type, "mcp_server_url": normalize_server_url(url)}
        assert isinstance(a, EnvironmentVariableCreateParams)
        if not _ENV_NAME.match(a.secret_name):
            raise InvalidRequest("auth.secret_name: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        auth = {
            "type": "environment_variable",
            "secret_name": a.secret_name,
            "networking": _networking(a.networking),
            "injection_location": _injection({"header": True, "body": True}, a.injection_location),
        }
        return (
            auth,
            {"type": "environment_variable", "secret_value": a.secret_value},
            {"auth_type": a.type, "secret_name": a.secret_name},
        )

    def get_credential(self, ws: str, vault_id: str, credential_id: str) -> JsonObject:
        return render(self.credential_record(ws, vault_id, credential_id).doc)

    def list_credentials(self, ws: str, vault_id: str, query: ListQuery) -> tuple[list[JsonObject], str | None]:
        self.vault_record(ws, vault_id)
        query.equals["vault_id"] = vault_id
        return self.credentials.list(ws, query)

    def update_credential(
        self, ws: str, vault_id: str, credential_id: str, params: CredentialUpdateParams
    ) -> JsonObject:
        fields = params.model_fields_set
        rec = self.credential_record(ws, vault_id, credential_id)
        self.credentials.check_live(rec)
        if "display_name" in fields and params.display_name is None:
            raise InvalidRequest("display_name: cannot be cleared")
        if "auth" in fields and params.auth is None:
            raise InvalidRequest("auth: cannot be cleared")
        auth_doc = cast(JsonObject, rec.doc["auth"])
        new_auth: JsonObject | None = None
        if params.auth is not None:
            if params.auth.type != auth_doc["type"]:
                raise InvalidRequest(
                    f"auth.type: this credential is {auth_doc['type']}; a credential's type cannot change"
                )
            patch = SecretPatch()
            new_auth = self._updated_auth(params.auth, auth_doc, patch)
            try:
                found = self.credential_secrets.merge_update(str(rec.doc["_secret"]), patch)
            except SecretStoreError as exc:
                raise ServiceUnavailable(
                    f"credential {credential_id!r}: its secret could not be updated: {exc}"
                ) from exc
            if not found:
                raise Conflict(f"credential {credential_id!r} has no stored secret; delete and recreate it")

        def edit(r: Record) -> None:
            if new_auth is not None:
                r.doc["auth"] = new_auth
                r.doc.pop(REFRESH_FAILED, None)  # new tokens: a failure of theirs is reported again
            assign(r.doc, params, ("display_name",))
            assign_metadata(r.doc, params, null_clears=False)

        return render(self.credentials.change(rec, edit, touch=new_auth is not None).doc)

    def _updated_auth(
        self,
        a: StaticBearerUpdateParams | McpOAuthUpdateParams | EnvironmentVariableUpdateParams,
        auth_doc: JsonObject,
        secret: SecretPatch,
    ) -> JsonObject:
        """The new auth document; the secret changes go to `secret` (the stored secret is never read here)."""
        fields = a.model_fields_set
        auth = dict(auth_doc)

        def secret_field(field: str, value: str | None, key: str | None = None) -> None:
            if field in fields and value is None:
                raise InvalidRequest(f"auth.{field}: cannot be cleared; archive or delete the credential instead")
            if value is not None:
                secret.put(key or field, value)

        if isinstance(a, StaticBearerUpdateParams):
            secret_field("token", a.token)
        elif isinstance(a, McpOAuthUpdateParams):
            secret_field("access_token", a.access_token)
            if "expires_at" in fields:
                expires_at = _future("auth.expires_at", a.expires_at, self.svc.clock.now())
                auth["expires_at"] = expires_at
                if expires_at:
                    secret.put("expires_at", expires_at)
                else:
                    secret.drop("expires_at")
            if "refresh" in fields:
                auth["refresh"] = self._updated_refresh(a, cast(JsonObject | None, auth.get("refresh")), secret)
        else:
            secret_field("secret_value", a.secret_value)
            if "networking" in fields:
                if a.networking is None:
                    raise InvalidRequest("auth.networking: cannot be cleared")
                auth["networking"] = _networking(a.networking)
            if "injection_location" in fields:
                auth["injection_location"] = _injection(
                    cast(JsonObject, auth["injection_location"]), a.injection_location
                )
        return auth

    @staticmethod
    def _updated_refresh(a: McpOAuthUpdateParams, current: JsonObject | None, secret: SecretPatch) -> JsonObject | None:
        r = a.refresh
        if r is None:
            secret.drop("refresh_token")
            secret.drop("client_secret")
            return None
        if current is None:
            raise InvalidRequest(
                "auth.refresh: this credential has no refresh configuration to update; create a new credential"
                " with refresh.client_id, refresh_token, token_endpoint and token_endpoint_auth"
            )
        refresh = dict(current)
        rf = r.model_fields_set
        if "refresh_token" in rf and r.refresh_token is None:
            raise InvalidRequest("auth.refresh.refresh_token: cannot be cleared; send refresh: null to drop refresh")
        if r.refresh_token is not None:
            secret.put("refresh_token", r.refresh_token)
        if r.scope is not None:
            refresh["scope"] = r.scope or None
        if r.token_endpoint_auth is not None:
            current_type = cast(JsonObject, refresh["token_endpoint_auth"])["type"]
            if current_type == "none":
                raise InvalidRequest(
                    "auth.refresh.token_endpoint_auth: this credential authenticates to its token endpoint with"
                    " type none; a client secret can only replace an existing one"
                )
            if r.token_endpoint_auth.client_secret is not None:
                secret.put("client_secret", r.token_endpoint_auth.client_secret)
        return refresh

    def _archive_credential(self, rec: Record) -> Record:
        out = self.credentials.archive_record(rec)
        self.secrets.delete(str(rec.doc["_secret"]))
        return out

    def _delete_credential(self, rec: Record) -> None:
        self.credentials.remove(rec)
        self.secrets.delete(str(rec.doc["_secret"]))

    def archive_credential(self, ws: str, vault_id: str, credential_id: str) -> JsonObject:
        return render(self._archive_credential(self.credential_record(ws, vault_id, credential_id)).doc)

    def delete_credential(self, ws: str, vault_id: str, credential_id: str) -> JsonObject:
        self._delete_credential(self.credential_record(ws, vault_id, credential_id))
        return self.credentials.deleted(credential_id)

    def validate_credential(self, ws: str, vault_id: str, credential_id: str) -> JsonObject:
        rec = self.credential_record(ws, vault_id, credential_id)
        kind = cast(JsonObject, rec.doc["auth"])["type"]
        if kind != "mcp_oauth":
            raise InvalidRequest(
                f"credential {credential_id!r} is {kind}; mcp_oauth_validate probes mcp_oauth credentials only"
            )
        if rec.archived:
            raise InvalidRequest(
                f"credential {credential_id!r} is archived; its secret was purged",
                error_code="vault_credential_archived",
            )
        if self.prober is None:
            raise InvalidRequest("mcp_oauth_validate: this deployment runs no MCP proxy to probe with")
        return self.prober.validate_credential(rec)
