"""The composition root: `compose` wires the services around a runtime's adapters, once for both runtimes.

`build_local_runtime` (here) gives it the embedded adapters (SQLite, in-process orchestrator, subprocess sandboxes,
the local vault and MCP proxy); `aws_runtime.build_aws_runtime` the AWS ones (DynamoDB, Step Functions, the
provisioner and MCP proxy Lambdas). A new service is wired in `compose` only (style.md: "One composition root").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from managed_agents.adapters.publishing_event_store import PublishingEventStore
from managed_agents.domain.clock import Clock, SystemClock
from managed_agents.domain.events import StoredEvent
from managed_agents.ports import (
    BlobStore,
    CredentialSecrets,
    DeploymentSchedules,
    EventNotifier,
    EventStore,
    ModelClient,
    Orchestrator,
    Outbox,
    ResourceStore,
    RevocationMarker,
    SandboxProvisioner,
    SecretStore,
)
from managed_agents.services.agents import AgentService
from managed_agents.services.common import Services
from managed_agents.services.deployments import DeploymentService, ScheduleSettings
from managed_agents.services.environments import EnvironmentService
from managed_agents.services.files import FileService
from managed_agents.services.keys import KeyService
from managed_agents.services.materialize import Materializer
from managed_agents.services.memory_stores import MemoryStoreService
from managed_agents.services.outputs import OutputCollector
from managed_agents.services.session_resources import SessionResourceService
from managed_agents.services.sessions import SessionService
from managed_agents.services.skills import SkillService
from managed_agents.services.vaults import CredentialProber, SecretRemover, VaultService
from managed_agents.services.webhooks import (
    WebhookDeliverer,
    WebhookService,
    WebhookSettings,
    outbox_events,
)
from managed_agents.services.work import WorkService, WorkSettings
from managed_agents.settings import ServerSettings

if TYPE_CHECKING:  # the embedded adapters load in build_local_runtime: AWS Lambdas import `Runtime` from here
    import asyncio

    from managed_agents.adapters.local.in_process_orchestrator import InProcessOrchestrator
    from managed_agents.adapters.local.request_priority import RequestPriority
    from managed_agents.adapters.local.run_lease import SqliteRunLeases
    from managed_agents.adapters.local.subprocess_sandbox import SubprocessSandboxProvisioner
    from managed_agents.adapters.local.workers import WorkerRole
    from managed_agents.mcp_proxy import McpProxy

log = logging.getLogger("managed_agents")
DB_FILE = "managed_agents.db"
SANDBOX_DIR = "sandboxes"
BLOB_DIR = "blobs"
ADMIN_KEY_FILE = "admin.key"
REVOCATIONS_FILE = "credentials.revoked"  # its length counts key revocations (adapters/local/revocation_marker.py)
WEBHOOKS_MARKER_FILE = "webhooks.enabled"  # not empty once an endpoint was enabled here (services/webhooks.py)


@dataclass
class Runtime:
    settings: ServerSettings
    resources: ResourceStore
    events: EventStore
    notifier: EventNotifier
    clock: Clock
    blobs: BlobStore | None
    keys: KeyService
    agents: AgentService
    environments: EnvironmentService
    sessions: SessionService
    deployments: DeploymentService
    webhooks: WebhookService
    orchestrator: InProcessOrchestrator | None
    work: WorkService | None = None
    provisioner: SubprocessSandboxProvisioner | None = None
    secrets: SecretStore | None = None
    vaults: VaultService | None = None
    mcp_proxy: McpProxy | None = None
    files: FileService | None = None  # None: no blob store, no Files API
    session_resources: SessionResourceService | None = None
    skills: SkillService | None = None  # None without a blob store
    memory_stores: MemoryStoreService | None = None
    deliverer: WebhookDeliverer | None = None  # None: no outbox (webhooks are stored, not delivered)
    leases: SqliteRunLeases | None = None  # embedded: per-session run leases (adapters/local/run_lease.py)
    # plain sends made on the event loop when the store's write locks are free (api/edge.py call_on_loop): the
    # embedded server, whose SQLite store raises WouldWait rather than wait there
    sends_on_loop: bool = False
    _reaper_stop: threading.Event = field(default_factory=threading.Event)

    def serve_model_requests_on(self, loop: asyncio.AbstractEventLoop, *, leaving: bool = False) -> None:
        """The embedded server's loop starts (or, `leaving`, stops) serving: the harness's model requests run on it
        (adapters/anthropic_model.py `run_requests_on`), when the model is the SDK adapter."""
        if self.orchestrator is None:  # (an API Lambda: no harness here)
            return
        from managed_agents.adapters.anthropic_model import AnthropicMessagesModel

        model = self.orchestrator.deps.model
        if isinstance(model, AnthropicMessagesModel):
            model.run_requests_on(loop, leaving=leaving)

    def set_api_url(self, url: str) -> None:
        """Where sandboxes call the API back (known once the server listens)."""
        if self.work is not None and not self.work.settings.api_url:
            self.work.settings = replace(self.work.settings, api_url=url)

    def start_reaper(self) -> None:
        """Stop work items whose lease ran out, a few times per lease TTL (dead or hung workers)."""
        work = self.work
        if work is None:
            return
        interval = min(1.0, work.settings.lease_ttl_seconds / 4)

        def loop() -> None:
            while not self._reaper_stop.wait(interval):
                try:
                    work.reap()
                except Exception:
                    log.exception("work reaper failed")

        threading.Thread(target=loop, name="work-reaper", daemon=True).start()

    def start_scheduler(self) -> None:
        """The embedded deployment scheduler: fire the due cron ticks (services/deployments.py `run_due`; its
        docstring states the missed-tick policy). Its state is in the store, so a restart resumes it."""
        deployments = self.deployments

        def loop() -> None:
            while not self._reaper_stop.wait(self.settings.deployment_tick_seconds):
                try:
                    deployments.run_due()
                    deployments.finish_pending_runs()  # fires cut off after their claim (another worker's)
                except Exception:
                    log.exception("deployment scheduler failed")

        threading.Thread(target=loop, name="deployment-scheduler", daemon=True).start()

    def recover(self, *, clear_leases: bool = True) -> int:
        """Wake every session the store says was running when the process last stopped. `clear_leases`: this is the
        whole server starting, so every run lease is a dead process's (False: one worker of several restarting;
        sessions that another worker runs stay its own: the wakes here are takeovers)."""
        if self.orchestrator is None:
            return 0
        if self.leases is not None and clear_leases:
            self.leases.clear()
        provisioner = self.provisioner
        if self.work is not None and provisioner is not None:  # the last process's sandboxes died with it
            self.work.replace_dead_sandboxes(lambda session_id: provisioner.pid(session_id) is not None)
        stuck = self.resources.find("session", "status", ["running", "rescheduling"])
        for rec in stuck:
            self.orchestrator.take_over(rec.id)
        # deployment runs claimed by a fire that was cut off (a finish racing a fire still in flight in another
        # worker is safe: services/deployments.py, "A fire cut off after its claim")
        self.deployments.finish_pending_runs(grace_seconds=0)
        return len(stuck)

    def close(self) -> None:
        self._reaper_stop.set()
        if self.leases is not None:
            self.leases.close()
        if self.deliverer is not None:
            self.deliverer.close()
        if self.orchestrator is not None:
            self.orchestrator.close()
        if self.provisioner is not None:
            self.provisioner.close()
        if self.mcp_proxy is not None:
            self.mcp_proxy.close()


@dataclass
class Adapters:
    """What differs between the runtimes (architecture: "Ports and adapters"): the adapters `compose` wires the
    services around, and the few choices that follow from them."""

    resources: ResourceStore
    events: EventStore
    notifier: EventNotifier
    clock: Clock
    work: WorkSettings
    blobs: BlobStore | None = None  # None: no Files API (an AWS deployment without a files bucket)
    orchestrator: Orchestrator | None = None  # None: attached later (embedded: it runs the harness on these services)
    provisioner: SandboxProvisioner | None = None
    background_launch: bool = True  # False on Lambda: a launch must end before the response freezes the container
    speculative_hands: bool = True  # sessions provision sandboxes while the first turn runs and stop them on delete
    vault_secrets: SecretRemover | None = None  # where credential secrets are purged; None: no vault API
    credential_secrets: CredentialSecrets | None = None  # where they are written (the MCP proxy Lambda on AWS)
    prober: CredentialProber | None = None
    deployment_schedules: DeploymentSchedules | None = None  # AWS: EventBridge Scheduler; None: in-process
    outbox: Outbox | None = None  # the webhook outbox the event store writes; None: webhooks are not delivered
    # the stores record webhook events where no Outbox drains them (AWS: the events table's stream is the outbox;
    # adapters/aws/webhook_queue.py): the resource store's writes record resource events there too
    stream_outbox: bool = False
    session_ended: Sequence[Callable[[str], object]] = ()  # called with the id of a deleted or archived session
    # the provisioner puts session resources in place through an init container given a materialization token
    # (Fargate: services/materials); False: the server does before the sandbox starts (embedded: services/materialize)
    init_tokens: bool = False
    revocations: RevocationMarker | None = None  # None: authenticated keys are not cached (services/keys.py)
    webhook_secrets: SecretStore | None = None  # where signing secrets are kept; None: in the endpoint records
    # marked before a webhook endpoint is enabled, in any process: `any_enabled` reads it, not the store, while none
    # is (services/webhooks.py); None: the store is read
    webhooks_marker: RevocationMarker | None = None


def compose(settings: ServerSettings, adapters: Adapters) -> Runtime:
    """Build the services once, around either runtime's adapters."""
    a = adapters
    # the only store the services, the harness and the failure report get: every append reaches open streams
    events = PublishingEventStore(a.events, a.notifier)
    svc = Services(a.resources, a.clock, a.orchestrator)
    work = WorkService(svc, events, a.work, a.provisioner, background_launch=a.background_launch)
    work.init_tokens = a.init_tokens
    sessions = SessionService(svc, events, a.notifier)
    sessions.work = work if a.speculative_hands else None
    vaults = None
    if a.vault_secrets is not None and a.credential_secrets is not None:
        vaults = VaultService(svc, a.vault_secrets, a.credential_secrets, prober=a.prober)
        sessions.vaults = vaults
    sessions.ended_hooks.extend(a.session_ended)
    files = FileService(svc, a.blobs, max_bytes=settings.max_file_bytes) if a.blobs is not None else None
    session_resources = SessionResourceService(svc, files) if files is not None else None
    sessions.session_resources = session_resources
    sessions.files = files
    memory_stores = MemoryStoreService(svc)
    if session_resources is not None:
        session_resources.memory_stores = memory_stores
    deployments = DeploymentService(
        svc,
        sessions,
        ScheduleSettings(
            settings.deployment_max_jitter_seconds,
            settings.deployment_catch_up_seconds,
            settings.deployment_run_grace_seconds,
        ),
    )
    deployments.schedules = a.deployment_schedules
    webhooks = WebhookService(
        svc,
        WebhookSettings(
            allow_loopback=settings.webhook_allow_loopback,
            allow_private=settings.webhook_allow_private,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            retry_max_seconds=settings.webhook_retry_max_seconds,
            max_attempts=settings.webhook_max_attempts,
        ),
        secrets=a.webhook_secrets,
        enabled_marker=a.webhooks_marker,
    )
    deliverer = None
    if a.outbox is not None:
        deliverer = WebhookDeliverer(svc, a.outbox, webhooks, poll_seconds=settings.webhook_poll_seconds)
        svc.webhook_recorded = deliverer.wake
    if a.outbox is not None or a.stream_outbox:
        # resource events (agent.created, deployment.paused, ...): recorded by the writes that cause them
        webhooks.record_resource_events(stream_outbox=a.stream_outbox)
    return Runtime(
        settings=settings,
        resources=a.resources,
        events=events,
        notifier=a.notifier,
        clock=a.clock,
        blobs=a.blobs,
        keys=KeyService(a.resources, a.clock, revocations=a.revocations),
        agents=AgentService(svc),
        environments=EnvironmentService(svc),
        sessions=sessions,
        orchestrator=None,
        work=work,
        vaults=vaults,
        files=files,
        session_resources=session_resources,
        skills=SkillService(svc, a.blobs) if a.blobs is not None else None,
        memory_stores=memory_stores,
        deployments=deployments,
        webhooks=webhooks,
        deliverer=deliverer,
    )


def build_local_runtime(
    settings: ServerSettings | None = None,
    *,
    model: ModelClient | None = None,
    clock: Clock | None = None,
    start_orchestrator: bool = True,
    worker: WorkerRole | None = None,
) -> Runtime:
    """The embedded runtime. `worker`: one of the processes of `serve --workers N` (adapters/local/workers.py): its
    notifier goes through the hub, and only the owner runs sandboxes, the reaper, the scheduler and the deliverer."""
    from managed_agents.adapters.anthropic_model import AnthropicMessagesModel
    from managed_agents.adapters.local.directory_blob_store import DirectoryBlobStore
    from managed_agents.adapters.local.in_process_orchestrator import InProcessOrchestrator
    from managed_agents.adapters.local.notifier import LocalNotifier
    from managed_agents.adapters.local.revocation_marker import FileRevocationMarker
    from managed_agents.adapters.local.run_lease import SqliteRunLeases
    from managed_agents.adapters.local.secret_file_store import EncryptedFileSecretStore
    from managed_agents.adapters.local.sqlite_store import (
        SqliteDatabase,
        SqliteEventStore,
        SqliteOutbox,
        SqliteResourceStore,
    )
    from managed_agents.adapters.local.workers import (
        HubNotifier,
        RemoteSandboxes,
        link_orchestrator,
        serve_sandbox_ops,
    )
    from managed_agents.harness.failures import harness_failure_reporter
    from managed_agents.harness.state_cache import StateCache
    from managed_agents.harness.turn import HarnessDeps
    from managed_agents.mcp_proxy import McpProxy

    settings = settings or ServerSettings()
    data_dir = Path(settings.data_dir)
    db = SqliteDatabase(owner_only(data_dir, DB_FILE))
    clock = clock or SystemClock()
    resources = SqliteResourceStore(db)
    secrets = EncryptedFileSecretStore.in_data_dir(data_dir)
    mcp_proxy = McpProxy(resources, secrets, clock)
    provisioner = None
    owner = worker is None or worker.owner  # runs the singletons: sandboxes, reaper, scheduler, deliverer
    if start_orchestrator:
        provisioner = local_provisioner(settings)
    sandboxes: SandboxProvisioner | None = provisioner
    if worker is not None and not owner and provisioner is not None:  # the owner runs them: ask it through the hub
        sandboxes = RemoteSandboxes(provisioner, worker.link)
    event_store = SqliteEventStore(db, clock)
    rt = compose(
        settings,
        Adapters(
            resources=resources,
            events=event_store,
            outbox=SqliteOutbox(db),
            notifier=LocalNotifier() if worker is None else HubNotifier(worker.link, worker.index),
            clock=clock,
            blobs=DirectoryBlobStore(data_dir / BLOB_DIR),
            work=WorkSettings(
                lease_ttl_seconds=settings.work_lease_ttl_seconds,
                start_timeout_seconds=settings.sandbox_start_timeout_seconds,
                api_url=settings.sandbox_api_url,
            ),
            provisioner=sandboxes,
            vault_secrets=secrets,
            credential_secrets=mcp_proxy,  # writes under the lock its OAuth refreshes of the credential hold
            prober=mcp_proxy,
            session_ended=(mcp_proxy.close_session,),
            revocations=FileRevocationMarker(data_dir / REVOCATIONS_FILE),
            webhook_secrets=secrets,  # (encrypted at rest, as vault credentials' secrets)
            webhooks_marker=FileRevocationMarker(data_dir / WEBHOOKS_MARKER_FILE),
        ),
    )
    rt.provisioner, rt.secrets, rt.mcp_proxy = provisioner, secrets, mcp_proxy
    rt.sends_on_loop = True
    mcp_proxy.resolver.webhooks = rt.sessions.svc  # a failed OAuth refresh: vault_credential.refresh_failed
    if provisioner is not None and rt.session_resources is not None:  # resources in place before the worker starts
        materializer = Materializer(resources, rt.events, rt.files)
        provisioner.materialize = materializer.prepare
        stage = provisioner.stage
        rt.session_resources.added_hooks.append(lambda sid, res: materializer.add_live(sid, stage(sid), res))
        rt.sessions.created_hooks.append(lambda sid: materializer.prefetch(sid, stage(sid)))
        if rt.files is not None:  # outputs collected when the session idles and when its sandbox stops
            collector = OutputCollector(resources, rt.files)
            outputs = provisioner.outputs

            def collect(sid: str) -> None:
                if not outputs(sid).is_dir():  # no sandbox was ever prepared: nothing to collect (and no thread)
                    return
                threading.Thread(
                    target=collector.collect, args=(sid, outputs(sid)), name=f"outputs-{sid}", daemon=True
                ).start()

            provisioner.stopped_hooks.append(lambda sid: collector.collect(sid, outputs(sid)))
            cast(PublishingEventStore, rt.events).observers.append(
                lambda sid, stored: collect(sid) if any(e.type == "session.status_idle" for e in stored) else None
            )
    webhooks = rt.webhooks

    def outboxed(event: StoredEvent) -> list[tuple[str, dict[str, str] | None]]:  # (in its event's transaction)
        caused = outbox_events(event)
        return caused if caused and webhooks.any_enabled() else []

    event_store.outbox_events = outboxed
    deliverer = rt.deliverer if owner else None
    if deliverer is not None:  # once the append committed, the deliverer need not wait for its next look
        # (woken only for rows the append wrote: with no endpoint enabled, a turn costs the deliverer no pass; the
        # append's own `outboxed` probed for endpoints already, so this looks at what it found and reads nothing)
        cast(PublishingEventStore, rt.events).observers.append(
            lambda sid, stored: (
                deliverer.wake() if webhooks.enabled_seen and any(outbox_events(e) for e in stored) else None
            )
        )
    if start_orchestrator:
        assert provisioner is not None and rt.work is not None
        model = model or AnthropicMessagesModel(
            api_key=os.environ.get("ANTHROPIC_API_KEY"),
            base_url=os.environ.get("ANTHROPIC_BASE_URL"),
            timeout=settings.model_timeout_seconds,
        )
        deps = HarnessDeps(
            rt.events,
            resources,
            model,
            clock,
            settings,
            rt.notifier,
            hands=rt.work.ensure_for_session,
            mcp=mcp_proxy,
            states=StateCache(max_sessions=max(1024, settings.max_concurrent_sessions)),
            files=rt.files.read if rt.files is not None else None,
            cloud_memory=provisioner.bwrap is not None,  # an unisolated sandbox has no /mnt/memory of its own
        )
        leases = rt.leases = SqliteRunLeases(db, ttl_seconds=settings.run_lease_seconds)
        event_store.guard = leases.guard
        event_store.before_commit = leases.settle
        rt.orchestrator = InProcessOrchestrator(
            deps,
            max_workers=settings.max_concurrent_sessions,
            # (a failed child thread's session is woken through `deps.wake`, set below)
            on_error=harness_failure_reporter(
                rt.events, resources, clock, wake=lambda sid: deps.wake and deps.wake(sid)
            ),
            leases=leases,
            yield_to=request_priority(settings).wait,
            step_slots=settings.step_slots,
            step_slot_wait_seconds=settings.step_slot_wait_seconds,
        )
        rt.sessions.svc.orchestrator = rt.orchestrator
        deps.wake = rt.orchestrator.wake  # a session's child threads (harness/threads.py)
        leases.start(wake=rt.orchestrator.take_over, lost=rt.orchestrator.lease_lost)
        if worker is not None:
            link_orchestrator(worker.link, rt.orchestrator)
            if owner:
                serve_sandbox_ops(worker.link, provisioner, rt.work)
        if owner:
            rt.start_reaper()
            rt.start_scheduler()
        if deliverer is not None:
            deliverer.start()
    return rt


def request_priority(settings: ServerSettings) -> RequestPriority:
    """The process's request priority (adapters/local/request_priority.py), bounded by the settings' wait."""
    from managed_agents.adapters.local.request_priority import PRIORITY

    PRIORITY.max_wait = settings.request_priority_seconds
    return PRIORITY


def local_provisioner(settings: ServerSettings) -> SubprocessSandboxProvisioner:
    """The embedded sandbox provisioner (RuntimeError: the isolation asked for is not available)."""
    from managed_agents.adapters.local.subprocess_sandbox import SubprocessSandboxProvisioner

    data_dir = Path(settings.data_dir)
    return SubprocessSandboxProvisioner(
        data_dir / SANDBOX_DIR,
        isolation=settings.sandbox_isolation,
        idle_seconds=settings.sandbox_idle_seconds,
        start_delay_seconds=settings.sandbox_start_delay_seconds,
        hidden=(data_dir,),
    )


def owner_only(data_dir: Path, db_file: str) -> Path:
    """The data dir (0700) and the database (0600, its WAL and shared-memory files inherit that) owner-only."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data_dir.stat().st_uid == os.getuid():
        os.chmod(data_dir, 0o700)
    path = data_dir / db_file
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (db_file, f"{db_file}-wal", f"{db_file}-shm"):
        if (data_dir / name).exists():
            os.chmod(data_dir / name, 0o600)
    return path


def bootstrap_admin_key(rt: Runtime) -> str | None:
    """On an empty data dir: a default workspace and an admin key, written to DATA_DIR/admin.key (0600)."""
    if rt.keys.workspaces():
        return None
    ws = rt.keys.create_workspace("default")
    _, secret = rt.keys.create_key(ws, name="admin")
    path = Path(rt.settings.data_dir) / ADMIN_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)
    return secret
