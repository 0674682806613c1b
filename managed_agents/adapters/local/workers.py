"""`serve --workers N`: N server processes on one data dir and one listening socket, and the notify hub between them.

The `serve` process becomes a supervisor: it binds the port, bootstraps the admin key, clears the run leases of the
last run, then starts N worker processes (multiprocessing "spawn": fresh interpreters, the socket passed down) and
restarts any that dies. Each worker is a whole embedded runtime (uvicorn on the shared socket, SQLite in WAL mode,
its own harness threads); the kernel spreads connections over them.

What keeps them one server:

* **Run leases** (run_lease.py): one process runs a session's harness at a time; a dead worker's sessions are taken
  over when their leases expire; a stale owner's appends are fenced.
* **The notify hub** (here): every append's (session, seq) goes from the appending worker to the supervisor over a
  Unix socketpair, which forwards the line to every other worker, whose in-process notifier wakes the streams of
  that session at once. Why a hub of socketpairs rather than the alternatives: polling SQLite (the AWS notifier)
  adds its interval to every event and reads the log per open stream; a pipe per pair of workers is N^2 file
  descriptors and re-wiring on each restart; a named socket in the data dir hits the 108-byte path limit and
  stale-file cleanup. The supervisor already outlives every worker, so it owns the hub: a restarted worker just
  gets a new socketpair. Per appended event the cost is one ~40-byte write, N-1 forwards and one dict lookup in
  each worker, whatever the number of streams open on other sessions. Lines are wake-ups, not data: a stream
  re-reads the log from its last seq, so a lost line costs at most one ping interval, never an event.
* **Interrupts**: an interrupt logged through one worker is sent through the hub too (`i` lines), so the worker
  that runs the session cuts its model request at once, as in one process.
* **One owner for the singletons**: worker 0 runs the cloud sandboxes (the others forward launch/stop/dispose to
  it through the hub: `RemoteSandboxes`), the work reaper, the deployment scheduler and the webhook deliverer.
  When it dies its sandboxes die with it (bubblewrap's --die-with-parent / the entrypoint's supervisor); the
  supervisor restarts it, and its start-up `recover()` replaces their work items, as a whole-server restart does.
  Previews (`event_deltas[]`) cross the hub only to the workers whose streams of that session want them
  (`HubNotifier`), so a stream sees them whichever worker runs the model request.

If the supervisor dies (even SIGKILL) the workers die with it (PR_SET_PDEATHSIG), so a crashed server is one crash,
recovered by the next start exactly as before. The processes themselves are started in `api/workers.py`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import queue
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from managed_agents.adapters.local.notifier import LocalNotifier, _LocalSubscription, wake_all
from managed_agents.domain.events import JsonObject
from managed_agents.ports import SandboxExited, SandboxLaunch

if TYPE_CHECKING:
    from managed_agents.adapters.local.in_process_orchestrator import InProcessOrchestrator
    from managed_agents.adapters.local.subprocess_sandbox import SubprocessSandboxProvisioner
    from managed_agents.services.work import WorkService

log = logging.getLogger("managed_agents.workers")
OWNER = 0  # the worker that owns sandboxes, the reaper, the scheduler and the webhook deliverer
SEND_TIMEOUT_SECONDS = 5.0


class HubLink:
    """A worker's end of the hub: `send` a line, and the reader thread hands received lines to `handlers` by their
    first word. `on_close` runs when the hub goes away (the supervisor died). `owner_ready` is set once the owner
    has recovered (its `r` line): the others serve only from then on, so its start-up recovery never stops the
    sandboxes of sessions they already run."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self.handlers: dict[str, Callable[[str], object]] = {"r": self._ready}
        self.on_close: Callable[[], object] | None = None
        self.owner_ready = threading.Event()

    def _ready(self, rest: str) -> None:
        if int(rest) == OWNER:
            self.owner_ready.set()

    def announce(self, index: int) -> None:
        """Tell the supervisor (and the other workers) that this worker serves from now on."""
        if index == OWNER:
            self.owner_ready.set()
        self.send(f"r {index}")

    def send(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                log.warning("the notify hub is gone: line dropped")

    def start(self) -> None:
        threading.Thread(target=self._read, name="notify-hub", daemon=True).start()

    def _read(self) -> None:
        with self.sock.makefile("rb") as lines:
            for raw in lines:
                line = raw.decode().rstrip("\n")
                kind, _, rest = line.partition(" ")
                handler = self.handlers.get(kind)
                if handler is None:
                    continue
                try:
                    handler(rest)
                except Exception:
                    log.exception("a notify hub message failed", extra={"kind": kind})
        if self.on_close is not None:
            self.on_close()


class HubNotifier(LocalNotifier):
    """The in-process notifier, plus: each append published here goes to the hub, and the hub's lines from the
    other workers wake this process's streams (the same per-session lookup as a local append).

    Previews cross too, only where a stream wants them: a worker says which preview types its streams of a session
    want whenever that changes (`w <worker> <session> <types>`, empty: none any more), and the worker running that
    session's model request sends its previews (`v <session> <json>`) only while another worker wants some. A
    worker that (re)starts has no streams: its word is dropped and the others say theirs again."""

    def __init__(self, link: HubLink, index: int = OWNER) -> None:
        super().__init__()
        self.link = link
        self.index = index
        self._said: dict[str, frozenset[str]] = {}  # session -> the preview types this worker last said it wants
        self._remote: dict[str, dict[int, frozenset[str]]] = {}  # session -> worker -> the types it wants
        link.handlers["p"] = self._remote_publish
        link.handlers["d"] = self._remote_deleted
        link.handlers["w"] = self._remote_wants
        link.handlers["v"] = self._remote_preview
        ready = link.handlers.get("r")

        def ready_line(rest: str) -> None:
            if ready is not None:
                ready(rest)
            self._restarted(rest)

        link.handlers["r"] = ready_line

    def _announce(self, session_id: str, seq: int) -> None:
        super()._announce(session_id, seq)
        self.link.send(f"p {session_id} {seq}")

    def publish_deleted(self, session_id: str) -> None:
        self._wake(session_id, deleted=True)
        self.link.send(f"d {session_id}")

    def _add(self, sub: _LocalSubscription) -> _LocalSubscription:
        super()._add(sub)
        if sub.previews:
            self._say_wants(sub.session_id)
        return sub

    def _remove(self, sub: _LocalSubscription) -> None:
        super()._remove(sub)
        if sub.previews:
            self._say_wants(sub.session_id)

    def _say_wants(self, session_id: str) -> None:
        wanted = super().wants_previews(session_id)
        with self._lock:
            if self._said.get(session_id, frozenset()) == wanted:
                return
            if wanted:
                self._said[session_id] = wanted
            else:
                self._said.pop(session_id, None)
        self.link.send(f"w {self.index} {session_id} {','.join(sorted(wanted))}")

    def wants_previews(self, session_id: str) -> frozenset[str]:
        wanted = super().wants_previews(session_id)
        with self._lock:
            for types in self._remote.get(session_id, {}).values():
                wanted |= types
        return wanted

    def publish_preview(self, session_id: str, preview: JsonObject) -> None:
        super().publish_preview(session_id, preview)
        if self._remote.get(session_id):
            self.link.send(f"v {session_id} {json.dumps(preview, separators=(',', ':'))}")

    def _remote_wants(self, rest: str) -> None:
        index, session_id, types = [*rest.split(" ", 2), "", ""][:3]
        wanted = frozenset(t for t in types.split(",") if t)
        with self._lock:
            workers = self._remote.setdefault(session_id, {})
            if wanted:
                workers[int(index)] = wanted
            else:
                workers.pop(int(index), None)
                if not workers:
                    del self._remote[session_id]

    def _remote_preview(self, rest: str) -> None:
        session_id, _, data = rest.partition(" ")
        LocalNotifier.publish_preview(self, session_id, json.loads(data))

    def _restarted(self, rest: str) -> None:
        """Worker `rest` (re)started: it wants nothing yet, and knows nothing of what this one wants."""
        if not rest.isdigit() or int(rest) == self.index:
            return
        with self._lock:
            for workers in self._remote.values():
                workers.pop(int(rest), None)
            self._remote = {sid: workers for sid, workers in self._remote.items() if workers}
            said = dict(self._said)
        for session_id, wanted in said.items():
            self.link.send(f"w {self.index} {session_id} {','.join(sorted(wanted))}")

    def _remote_publish(self, rest: str) -> None:
        session_id, _, seq = rest.partition(" ")
        # the log reaches `seq`: this process's streams of the session read the store up to there
        self._advance(session_id, int(seq) if seq.isdigit() else 2**62)
        self._wake(session_id)

    def _remote_deleted(self, session_id: str) -> None:
        self._wake(session_id, deleted=True)

    def _wake(self, session_id: str, *, deleted: bool = False) -> None:
        """This process's streams of the session (LocalNotifier's per-session lookup: other sessions cost nothing)."""
        wake_all(self._targets(session_id), deleted)


class RemoteSandboxes:
    """A non-owner worker's sandbox provisioner: launch, stop and dispose go to the owner (worker 0) through the hub;
    everything else (the session's stage and outputs directories, the isolation it reports) is the local
    provisioner's, which shares the data dir. A failed launch is reported by the owner (`serve_sandbox_ops`)."""

    def __init__(self, local: SubprocessSandboxProvisioner, link: HubLink) -> None:
        self.local = local
        self.link = link

    def launch(self, spec: SandboxLaunch, on_exit: SandboxExited) -> None:
        self._send({"op": "launch", "spec": asdict(spec)})

    def stop(self, session_id: str, work_id: str | None) -> None:
        self._send({"op": "stop", "session_id": session_id, "work_id": work_id})

    def dispose(self, session_id: str) -> None:
        self._send({"op": "dispose", "session_id": session_id})

    def _send(self, op: dict[str, Any]) -> None:
        self.link.send("s " + json.dumps(op, separators=(",", ":")))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)


def serve_sandbox_ops(link: HubLink, provisioner: SubprocessSandboxProvisioner, work: WorkService) -> None:
    """On the owner: run the sandbox operations the other workers forward, as its own WorkService would."""

    def handle(rest: str) -> None:
        op = json.loads(rest)
        if op["op"] == "launch":
            spec = SandboxLaunch(**op["spec"])

            def launch() -> None:
                try:
                    provisioner.launch(spec, work.sandbox_exited)
                except Exception as exc:
                    log.exception("sandbox launch failed", extra={"session_id": spec.session_id})
                    work.fail(spec.work_id, f"The sandbox could not be started: {exc}")

            threading.Thread(target=launch, name=f"launch-{spec.work_id}", daemon=True).start()
        elif op["op"] == "stop":  # (in a thread: a stop waits for the exit's report, which may log through the hub)
            stop = functools.partial(provisioner.stop, op["session_id"], op.get("work_id"))
            threading.Thread(target=stop, name=f"stop-{op['session_id']}", daemon=True).start()
        elif op["op"] == "dispose":
            dispose = functools.partial(provisioner.dispose, op["session_id"])
            threading.Thread(target=dispose, name=f"dispose-{op['session_id']}", daemon=True).start()

    link.handlers["s"] = handle


def link_orchestrator(link: HubLink, orchestrator: InProcessOrchestrator) -> None:
    """An interrupt logged through one worker cuts the run of whichever worker runs the session (its model request
    in flight), as it does in one process; the interrupted run then parks on the logged interrupt."""
    orchestrator.interrupt_hooks.append(lambda session_id: link.send(f"i {session_id}"))
    link.handlers["i"] = orchestrator.cut


@dataclass
class WorkerRole:
    """What `build_local_runtime` needs to know to be one of several workers."""

    index: int
    count: int
    link: HubLink

    @property
    def owner(self) -> bool:
        return self.index == OWNER


class Hub:
    """The supervisor's side: one socketpair per worker; a line from one worker goes to every other one (`s` lines:
    to the owner only)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._ends: dict[int, socket.socket] = {}
        self._buffers: dict[int, bytes] = {}
        self._pending: queue.SimpleQueue[tuple[int, socket.socket]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._lock = threading.Lock()
        self._owned: list[socket.socket] = []
        self.ready: set[int] = set()  # the workers that said they serve (`r` lines); the owner first
        self.changed = threading.Condition()

    def attach(self, index: int) -> socket.socket:
        """A new socketpair for worker `index` (replacing a dead one's); returns the worker's end."""
        mine, theirs = socket.socketpair()
        mine.settimeout(SEND_TIMEOUT_SECONDS)  # a stuck worker drops wake-ups instead of stalling the others
        with self._lock:
            self._owned.append(mine)
        self._pending.put((index, mine))
        self._wake_w.send(b"x")
        return theirs

    def start(self) -> None:
        threading.Thread(target=self._run, name="notify-hub", daemon=True).start()

    def sockets(self) -> list[socket.socket]:
        """The hub's own sockets, still open (a forked worker closes its copies)."""
        with self._lock:
            self._owned = [sock for sock in self._owned if sock.fileno() != -1]
            return [self._wake_r, self._wake_w, *self._owned]

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select():
                if key.data is None:
                    self._wake_r.recv(4096)
                    self._adopt()
                    continue
                self._receive(int(key.data))

    def _adopt(self) -> None:
        while not self._pending.empty():
            index, sock = self._pending.get()
            self._drop(index)
            self._ends[index] = sock
            self._buffers[index] = b""
            self._selector.register(sock, selectors.EVENT_READ, index)
            if index != OWNER and OWNER in self.ready:  # a restarted worker need not wait for the owner's recovery
                with contextlib.suppress(OSError):
                    sock.sendall(f"r {OWNER}\n".encode())

    def _drop(self, index: int) -> None:
        with self.changed:
            self.ready.discard(index)
            self.changed.notify_all()
        old = self._ends.pop(index, None)
        if old is not None:
            self._selector.unregister(old)
            old.close()

    def _receive(self, index: int) -> None:
        sock = self._ends[index]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:  # the worker died: its replacement attaches a new pair
            self._drop(index)
            return
        buffered = self._buffers[index] + data
        complete, _, self._buffers[index] = buffered.rpartition(b"\n")
        if not complete:
            return
        lines = complete.split(b"\n")
        for line in lines:
            if line.startswith(b"r "):
                with self.changed:
                    self.ready.add(int(line[2:]))
                    self.changed.notify_all()
        to_owner = b"".join(line + b"\n" for line in lines if line.startswith(b"s "))
        to_all = b"".join(line + b"\n" for line in lines if not line.startswith(b"s "))
        for other, end in list(self._ends.items()):
            payload = (to_all if other != index else b"") + (to_owner if other == OWNER else b"")
            if payload:
                try:
                    end.sendall(payload)
                except OSError:
                    log.warning("notify hub: worker %s did not take a message", other)
