"""What a Fargate sandbox's init container reads to put its session's resources in place (sandbox/materials.py).

A platform work item whose session has `file` or `github_repository` resources gets, besides its work token, a
materialization token (`wi-ma-...`, its SHA-256 kept in the item as `_init_token`). RunTask hands it to the init
container only; the sandbox container never holds it. It is accepted while the item is `starting`, i.e. until the
worker's first heartbeat, which the sandbox container can only send once the init container has exited: so it is
dead before any tool runs. With it the init container may read exactly this session's manifest (each repository's
token included), the bytes of its file resources, and report the resources it could not put in place (each becomes
the same readable `session.error` as on the embedded server).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from typing import cast

from managed_agents.domain.errors import ApiError, AuthenticationFailed, InvalidRequest, NotFound
from managed_agents.domain.events import JsonObject
from managed_agents.ports import EventStore, Record, ResourceStore
from managed_agents.services.files import FileService
from managed_agents.services.keys import hash_key
from managed_agents.services.materialize import MaterializeError, report_errors
from managed_agents.services.session_resources import repository_token, resources_of

INIT_TOKEN_PREFIX = "wi-ma-"
MATERIALIZED = ("file", "github_repository")
ERROR_TYPES = frozenset(
    {
        "unknown_error",
        "repository_authentication_error",
        "repository_not_found_error",
        "repository_forbidden_error",
        "repository_checkout_error",
        "repository_clone_error",
    }
)
MAX_ERRORS = 200


def needs_init(session_doc: JsonObject) -> bool:
    """Whether a sandbox of this session has anything for its init container to put in place."""
    return any(r.get("type") in MATERIALIZED for r in resources_of(session_doc))


def live_files_etag(sess: Record) -> str:
    """What the session's file resources are, as an HTTP entity tag (their ids and versions)."""
    files = [f"{r.get('id')}@{r.get('updated_at')}" for r in resources_of(sess.doc) if r.get("type") == "file"]
    return '"' + hashlib.sha256("\n".join(files).encode()).hexdigest()[:32] + '"'


def new_init_token() -> tuple[str, str]:
    """(the token, the hash the work item keeps)."""
    token = INIT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_key(token)


class MaterialService:
    def __init__(self, resources: ResourceStore, events: EventStore, files: FileService | None) -> None:
        self.resources = resources
        self.events = events
        self.files = files

    def _session(self, environment_id: str, work_id: str, token: str | None) -> Record:
        """The session of the work item this token was issued for; 401 for anything else (no oracle)."""
        denied = AuthenticationFailed("invalid or expired materialization token")
        if not token or not token.startswith(INIT_TOKEN_PREFIX):
            raise denied
        work = self.resources.get_by_id("work", work_id)
        if work is None or str(work.attrs.get("environment_id")) != environment_id:
            raise denied
        expected = str(work.doc.get("_init_token") or "")
        if not expected or not hmac.compare_digest(expected, hash_key(token)) or work.doc.get("state") != "starting":
            raise denied
        sess = self.resources.get_by_id("session", str(work.attrs.get("session_id")))
        if sess is None or sess.doc.get("_deleted"):
            raise denied
        return sess

    def manifest(self, environment_id: str, work_id: str, token: str | None) -> JsonObject:
        sess = self._session(environment_id, work_id, token)
        out: list[JsonObject] = []
        errors: list[tuple[str, MaterializeError]] = []
        for res in resources_of(sess.doc):
            rid, kind = str(res.get("id")), res.get("type")
            if kind == "github_repository":
                out.append(
                    {
                        "id": rid,
                        "type": kind,
                        "url": res["url"],
                        "mount_path": res["mount_path"],
                        "checkout": res.get("checkout"),
                        "authorization_token": repository_token(sess.doc, rid),
                    }
                )
            elif kind == "file":
                entry = self._file_entry(sess, res, errors)
                if entry is not None:
                    out.append(entry)
        report_errors(self.events, sess.id, errors, "init")
        return {"session_id": sess.id, "resources": out}

    def _file_entry(
        self, sess: Record, res: JsonObject, errors: list[tuple[str, MaterializeError]]
    ) -> JsonObject | None:
        """A file resource as a sandbox places it (its bytes' hash and size), or None with an error for a file that
        is gone (deleted, expired)."""
        rid = str(res.get("id"))
        try:
            rec = self._file(sess, res)
        except ApiError as exc:
            message = f"file resource {rid}: {exc.message}; it is not mounted at {res.get('mount_path')}"
            errors.append((f"{rid}@{res.get('updated_at')}", MaterializeError("unknown_error", message)))
            return None
        assert self.files is not None
        return {
            "id": rid,
            "type": "file",
            "file_id": res["file_id"],
            "mount_path": res["mount_path"],
            "sha256": self.files.sha256(rec),
            "size_bytes": rec.doc.get("size_bytes"),
        }

    # -- the running sandbox's view (its work token): the file resources, added ones included ------------------------

    def live_files(self, sess: Record) -> JsonObject:
        """The session's `file` resources, for its running Fargate sandbox to put the ones added since its start in
        place before its next tool call (sandbox/entrypoint.py InputsSync). Files only: no repository, no token."""
        out: list[JsonObject] = []
        errors: list[tuple[str, MaterializeError]] = []
        for res in resources_of(sess.doc):
            if res.get("type") == "file":
                entry = self._file_entry(sess, res, errors)
                if entry is not None:
                    out.append(entry)
        report_errors(self.events, sess.id, errors, "live")
        return {"session_id": sess.id, "files": out}

    def live_file_content(self, sess: Record, resource_id: str) -> tuple[JsonObject, Iterator[bytes]]:
        res = self._resource(sess, resource_id)
        if res.get("type") != "file" or self.files is None:
            raise NotFound(f"session resource {resource_id!r} is not a file")
        return self.files.content(sess.workspace_id, str(res["file_id"]))

    def report_live(self, sess: Record, body: JsonObject) -> JsonObject:
        """The file resources the running sandbox could not put in place, each a `session.error`; files only."""
        return self._report(sess, body, kinds=("file",))

    def _file(self, sess: Record, res: JsonObject) -> Record:
        if self.files is None:
            raise NotFound("this deployment has no Files API")
        return self.files.record(sess.workspace_id, str(res["file_id"]))

    def file_content(
        self, environment_id: str, work_id: str, token: str | None, resource_id: str
    ) -> tuple[JsonObject, Iterator[bytes]]:
        sess = self._session(environment_id, work_id, token)
        res = self._resource(sess, resource_id)
        if res.get("type") != "file" or self.files is None:
            raise NotFound(f"session resource {resource_id!r} is not a file")
        return self.files.content(sess.workspace_id, str(res["file_id"]))

    def report(self, environment_id: str, work_id: str, token: str | None, body: JsonObject) -> JsonObject:
        """The resources the init container could not put in place, each a `session.error` (once per version)."""
        return self._report(self._session(environment_id, work_id, token), body, kinds=MATERIALIZED)

    def _report(self, sess: Record, body: JsonObject, *, kinds: tuple[str, ...]) -> JsonObject:
        given = body.get("errors")
        if not isinstance(given, list) or len(given) > MAX_ERRORS:
            raise InvalidRequest(f"errors: a list of at most {MAX_ERRORS} objects")
        errors: list[tuple[str, MaterializeError]] = []
        for item in cast(list[JsonObject], given):
            if not isinstance(item, dict):
                raise InvalidRequest("errors: each item is an object")
            res = self._resource(sess, str(item.get("resource_id")))
            if res.get("type") not in kinds:
                raise InvalidRequest(f"errors: resource {res.get('id')!r} is not one of {', '.join(kinds)}")
            kind = str(item.get("type"))
            kind = kind if kind in ERROR_TYPES else "unknown_error"
            message = str(item.get("message") or "the resource could not be put in place")[:1000]
            token_value = repository_token(sess.doc, str(res["id"])) if res.get("type") == "github_repository" else None
            if token_value:
                message = message.replace(token_value, "***")
            url = str(res.get("url")) if res.get("type") == "github_repository" else None
            errors.append((f"{res['id']}@{res.get('updated_at')}", MaterializeError(kind, message, repository_url=url)))
        report_errors(self.events, sess.id, errors, "init")
        return {"reported": len(errors)}

    @staticmethod
    def _resource(sess: Record, resource_id: str) -> JsonObject:
        for res in resources_of(sess.doc):
            if res.get("id") == resource_id:
                return res
        raise NotFound(f"session resource {resource_id!r} not found")
