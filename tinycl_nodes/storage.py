"""The one state store of every node that learns, and the one atomic writer.

Every learning node (learner, labeler, board, label app, aggregator) keeps its learned state in
one file ``<state_dir>/<name>.state`` through :class:`StateStore`, in one format: a bundle of
named core state dicts (``core/state.py``: a JSON header + numpy arrays in an ``.npz``, no
pickle) behind a magic and a SHA-256 of it. Anything that is not a core object goes in as a state dict too — bytes as a uint8
array, JSON-able values in ``meta`` (:func:`core.state.make_state`).

    store = StateStore(state_dir, "learner", log, snapshot=lambda: {"head": head.state_dict()},
                       every_n=100, every_s=10.0)
    store.load(apply)       # at start: apply(states) restores; a bad file is moved aside → fresh
    store.learned()         # after each learned sample: checkpoints every N samples or T seconds
    store.tick()            # from a timer (≤ every_s): checkpoints what changed T seconds ago (records by weight too)
    store.save()            # now, and on disk when it returns (at exit, on SIGTERM)
    store.save(wait=False)  # now, written by the file's writer thread (a head version: store.written(store.ticket))

A store opened with ``journal=True`` (the learner, both labelers, the board node) also keeps what was learned since the
last checkpoint (``journal.py``):

    store.record(payload)   # after each message learned from: appended to the journal, no fsync
    store.replay(learn)     # at the start, once the node can learn: learn(payload) for each record since

Why this shape: a kill -9 loses at most ``every_n`` samples or ``every_s`` seconds of learning (with a journal,
none); a write is temp file + fsync + rename + fsync of the folder, so a crash mid-write leaves the old
file or the new one, never a torn one. The periodic checkpoints (``learned``, ``tick``) and those of head versions
(``head_publisher.py``, which publishes a version once :meth:`StateStore.written`) are serialised on the caller's
thread and written by the file's own writer thread, in order: the node's message thread does not wait
for the disk's fsync (6–16 ms on the bench machine, more on an SD card), and a kill -9 loses at most the one
write under way on top of the above. A file that cannot be used (corrupt, truncated, empty,
unreadable, a directory, of another kind, deeply nested…) is never overwritten and never a
traceback: it is renamed ``<name>.state.bad-<time>``, one line names both paths, and the node
starts fresh. A ``state_dir`` that exists but is not a folder is a start-up error
(:class:`TinyclError`, the node exits 2), and so are a ``state_dir`` that cannot be created and a state file that
another running process holds:
each store takes an advisory lock (``.<name>.state.lock``, holding its pid) for its process's life, so
two graphs started on one state folder cannot overwrite each other's learning; the kernel releases it
when the process dies, even by kill -9.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .core import state as st
from .journal import BAD, ORPHAN, Journal, aside_path, fsync_folder
from .core.errors import OtherConfigError, StateError, TinyclError

States = dict[str, dict[str, Any]]
#: a state file larger than this is refused unread (the biggest real one is a few MB)
MAX_STATE_BYTES = 256 << 20
#: a state file is MAGIC + SHA-256 of the rest + the bundle: any changed byte is detected (the
#: zip's own CRCs miss changes in its headers); files from before the checksum (a bare zip) still load
MAGIC = b"TCLSTAT1"
_LEGACY = b"PK\x03\x04"


def write_atomic(path: str | os.PathLike[str], payload: bytes, mode: int = 0o644) -> None:
    """Write ``payload`` to ``path`` via a temp file, fsync, rename and fsync of the folder.

    The temp file is created private (0600); ``mode`` is what the finished file gets, so an
    exported head can be read by whoever builds the firmware.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)   # the rename itself survives a power cut only once the folder is synced


def states_to_bytes(states: States) -> bytes:
    """Several named state dicts (e.g. clusterer + head) as one payload."""
    bundle = st.make_state("bundle", 1, {}, {}, {"names": sorted(states)})
    for name, state in states.items():
        bundle["meta"][name] = {k: state[k] for k in ("format", "kind", "version", "params", "meta")}
        bundle["arrays"].update({f"{name}/{k}": v for k, v in state["arrays"].items()})
    return st.to_bytes(bundle, compress=False)


def states_from_bytes(payload: bytes) -> States:
    """The named states of :func:`states_to_bytes`; StateError on anything else."""
    bundle = st.check_state(st.from_bytes(payload), "bundle", 1)
    names = bundle["meta"].get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StateError("state: bundle without a list of names")
    out = {}
    for name in names:
        head = bundle["meta"].get(name)
        if not isinstance(head, dict):
            raise StateError(f"state: entry {name!r} is missing")
        prefix = f"{name}/"
        out[name] = {**head, "arrays": {k[len(prefix):]: v for k, v in bundle["arrays"].items()
                                        if k.startswith(prefix)}}
    return out


def file_bytes(states: States) -> bytes:
    """The bytes of a state file: MAGIC, checksum, bundle."""
    body = states_to_bytes(states)
    return MAGIC + hashlib.sha256(body).digest() + body


def states_from_file_bytes(raw: bytes) -> States:
    """Parse :func:`file_bytes` (or a bare bundle of an older file); StateError if it cannot be used."""
    if raw.startswith(MAGIC):
        digest, body = raw[len(MAGIC):len(MAGIC) + 32], raw[len(MAGIC) + 32:]
        if hashlib.sha256(body).digest() != digest:
            raise StateError(f"state: checksum mismatch ({len(raw)} bytes: truncated or changed)")
        return states_from_bytes(body)
    if raw.startswith(_LEGACY):
        return states_from_bytes(raw)
    raise StateError("state: empty file" if not raw else "state: not a tinycl state file (no header)")


def save_states(path: str | os.PathLike[str], states: States) -> None:
    """Write named states atomically (what :meth:`StateStore.save` does, without the schedule)."""
    write_atomic(path, file_bytes(states))


def load_states(path: str | os.PathLike[str]) -> States | None:
    """The named states in ``path``; None if there is no file; StateError if it cannot be used."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise StateError("state: not a regular file (a directory, a pipe or a device)")
        if info.st_size > MAX_STATE_BYTES:
            raise StateError(f"state: file of {info.st_size} bytes, at most {MAX_STATE_BYTES}")
        return states_from_file_bytes(path.read_bytes())
    except StateError:
        raise
    except Exception as exc:  # noqa: BLE001 - every way a file can be unusable is one StateError
        raise StateError(f"state: cannot be read ({one_line(exc)})") from None


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


#: the state file's entry naming the first journal segment it does not hold
JOURNAL_ENTRY = "_journal"


def set_aside(folder: Path) -> list[str]:
    """The names of the files set aside in ``folder`` (:meth:`StateStore.move_aside`, orphaned journals, copies of
    damaged journal segments), sorted."""
    return sorted(p.name for p in folder.iterdir() if BAD in p.name or ORPHAN in p.name)


def journal_segment(entry: dict[str, Any] | None) -> int | None:
    """The first journal segment a checkpoint does not hold (None: it names none)."""
    if entry is None:
        return None
    segment = st.check_state(entry, "Journal", 1)["meta"].get("segment")
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 0:
        raise StateError(f"state: journal segment must be a non-negative int, got {segment!r}")
    return segment


_held_locks: dict[Path, int] = {}     # lock file -> this process's locked descriptor (kept until exit)

#: while a file cannot be written (a full disk), the same failure is said at most this often
REPEAT_FAILURE_S = 60.0


class RepeatedFailure:
    """What to say of a write that may keep failing (a full disk fails every checkpoint, several a second): the
    first failure of a run, a new error, or one that someone waits for, at once; the same error again at most once
    every :data:`REPEAT_FAILURE_S`, with a count; the write that lands again, once. Each is one line on ``log``.
    (Anything else that can fail for every message the same way too: ``attempts`` names what is counted; "" for a
    failure that is a time, not a count of attempts: a driver silent is checked every 50 ms, and "after 90 failed
    checks in 4 s" said nothing a person could use.)"""

    def __init__(self, what: str, log: logging.Logger, attempts: str = "writes", intermittent: bool = False) -> None:
        self.what, self.log = what, log       # e.g. "save state to /x/learner.state"
        self.attempts = attempts
        # failures that come and go among successes (a driver's NaN reading now and then among 200 good ones a
        # second): a success is said, and ends the count, at most once every REPEAT_FAILURE_S too, else every bad
        # reading was two lines ("cannot …", "could … again")
        self.intermittent = intermittent
        self.failed_n = self.unsaid = 0       # failures since the last write that landed / of them not said
        self.since = self.said_at = 0.0
        self.said = ""                        # the error last said

    def failed(self, error: str, always: bool = False, since: float | None = None) -> None:
        """``since``: when the failure began (``time.monotonic()``), if before this first call (a silence)."""
        now = time.monotonic()
        self.failed_n += 1
        if self.failed_n == 1:
            self.since = now if since is None else since
        if not (self.failed_n == 1 or always or error != self.said or now - self.said_at >= REPEAT_FAILURE_S):
            self.unsaid += 1
            return
        if self.failed_n == 1:
            more = (f"; {'repeats' if self.intermittent else 'until one works again, repeats'} are said once every "
                    f"{REPEAT_FAILURE_S:.0f} s")
        elif not self.attempts:
            more = f" (for {now - self.since:.0f} s)"
        else:
            more = f" ({self.failed_n} failed {self.attempts} in {now - self.since:.0f} s, {self.unsaid} not said)"
        self.said, self.said_at, self.unsaid = error, now, 0
        self.log.error("cannot %s: %s%s", self.what, error, more)

    @property
    def error(self) -> str:
        """Why it fails now (the latest error: a new one is always said), "" once a write landed again."""
        return self.said if self.failed_n else ""

    def landed(self) -> None:
        if self.failed_n and not (self.intermittent and time.monotonic() - self.said_at < REPEAT_FAILURE_S):
            took = time.monotonic() - self.since
            if self.attempts:
                self.log.warning("could %s again, after %d failed %s in %.0f s", self.what, self.failed_n,
                                 self.attempts, took)
            else:
                self.log.warning("could %s again, after %.0f s", self.what, took)
            self.failed_n = self.unsaid = 0


class _Writer:
    """The one thread that writes a state file (shared by every store of that file in this process, so its writes
    land in the order they were asked for). A write asked for while another waits replaces it: the newer bytes hold
    everything the older ones did. Its failures are said as :class:`RepeatedFailure` says them; one that someone
    waits for (at exit) always."""

    def __init__(self, path: Path, log: logging.Logger) -> None:
        self.path, self.log = path, log
        self._cond = threading.Condition()
        self._payload: bytes | None = None
        self._after: Callable[[], None] | None = None   # what the write of ``_payload`` is followed by, once on disk
        self._asked = self._done = 0          # writes asked for / written (or failed), in order
        self._waited = 0                      # the newest write asked for with wait
        self._ok = True                       # whether the last write succeeded
        self._thread: threading.Thread | None = None
        self._failures = RepeatedFailure(f"save state to {path}", log)
        self.landed_at = 0.0                  # wall-clock time the last write landed (0: none in this process)
        self.failed_total = 0                 # writes that failed, in all

    @property
    def error(self) -> str:
        """Why writing fails now; "" while it does not."""
        return self._failures.error

    def write(self, payload: bytes, wait: bool, after: Callable[[], None] | None = None) -> tuple[int, bool]:
        """Have ``payload`` written (then ``after()`` called, on this thread): its ticket (:meth:`written`) and, with
        ``wait``, once it is on disk, whether it could be written (without, True: taken)."""
        with self._cond:
            self._payload, self._after = payload, after
            self._asked += 1
            ticket = self._asked
            if wait:
                self._waited = ticket
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"state writer {self.path.name}", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            if not wait:
                return ticket, True
            while self._done < ticket:
                self._cond.wait()
            return ticket, self._ok

    def written(self, ticket: int) -> bool:
        """Whether the write of ``ticket`` is done (it, or a newer one that replaced it)."""
        with self._cond:
            return self._done >= ticket

    def flush(self) -> None:
        """Return once every write asked for so far is done."""
        with self._cond:
            while self._done < self._asked:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._payload is None:
                    self._cond.wait()
                payload, after, ticket, self._payload = self._payload, self._after, self._asked, None
                waited = self._waited > self._done
            ok = False
            try:
                write_atomic(self.path, payload)
                ok = True
                self.landed_at = time.time()
                self._failures.landed()
                if after is not None:
                    self._then(after)
            except Exception as exc:  # noqa: BLE001 - disk full, folder gone: the node keeps learning, says so
                self.failed_total += 1
                self._failures.failed(one_line(exc), always=waited)
            finally:                  # whatever happened, who waits for this write is told
                with self._cond:
                    self._done, self._ok = ticket, ok
                    self._cond.notify_all()

    def _then(self, after: Callable[[], None]) -> None:
        """What follows a write on disk (a journal's older segments deleted): its failure is one line, not the
        write's."""
        try:
            after()
        except Exception as exc:  # noqa: BLE001 - e.g. a segment that cannot be deleted: replayed once more
            self.log.warning("after saving %s: %s", self.path.name, one_line(exc))


_writers: dict[Path, _Writer] = {}    # state file -> its writer (kept until exit)


@atexit.register
def _flush_writers() -> None:
    """At exit, what was asked for is written (the writers are daemon threads)."""
    for writer in list(_writers.values()):
        writer.flush()


def state_path(folder: str | os.PathLike[str], name: str) -> Path:
    """Where node ``name`` keeps its state in ``folder`` (the store's, and what a reader such as
    ``tinycl fleet status`` opens)."""
    return Path(folder) / f"{name}.state"


#: what gives a node of the graph another state file, in its parameters' words (its namespace: another default folder)
ELSEWHERE = "namespace or state_dir"


def hold_lock(path: Path, log: logging.Logger, elsewhere: str = ELSEWHERE) -> None:
    """Lock the state file ``path`` for this process (``.<name>.state.lock`` beside it, holding our pid; its folder
    made by the store), or TinyclError naming the process that holds it. A store opened again in this process (a node
    configured again) keeps its lock; a folder where no lock can be taken (read-only, a file system without locks) is
    said once and left. ``elsewhere``: what the user can give this one to use another file, as it was started (a
    node's ``state_dir`` parameter, a command's ``--state-dir`` option)."""
    lock = path.with_name(f".{path.name}.lock")
    key = Path(os.path.realpath(lock))       # not Path.resolve(): a symlink loop is a RuntimeError there
    if key in _held_locks:
        return
    fd = -1
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:                   # held by another process
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise TinyclError(f"state file {path} is in use by another running process (pid {holder}): two nodes "
                          f"on one state file overwrite each other's learning; stop that one, or give this one its "
                          f"own {elsewhere}") from None
    except OSError as exc:                    # no folder or lock file here, or no locks on this file system
        if fd >= 0:
            os.close(fd)
        log.warning("no lock on %s (%s): nothing stops a second node from using the same state file", path,
                    one_line(exc))
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[key] = fd


def journal_words(relearned: int) -> str:
    """The end of a node's restore line: how many journal records :meth:`StateStore.replay` learned again, if any."""
    return f" and its journal ({relearned} messages learned again)" if relearned else ""


@dataclass(frozen=True)
class StoreHealth:
    """What a node's diagnostics say of its state file (:meth:`StateStore.health`)."""

    path: Path
    saved_at: float        # wall-clock time of the last checkpoint on disk (this run's, else the file's); 0: none
    failed_total: int      # checkpoints that could not be saved, in all (this process)
    error: str             # why the state cannot be saved now; "" while it can
    journal_error: str     # why the journal cannot be appended to now; "" while it can


class StateStore:
    """One node's learned state: load once, checkpoint every N samples or T seconds, save at exit.

    ``option``: the setting that names ``folder``, as this process was started (a node's ``state_dir`` parameter,
    ``tinycl aggregate --state-dir``), in the errors about the folder; ``elsewhere``: what gives it another state file
    (:func:`hold_lock`)."""

    def __init__(self, folder: str | os.PathLike[str], name: str, log: logging.Logger,
                 snapshot: Callable[[], States] | None = None, every_n: int = 100, every_s: float = 10.0,
                 journal: bool = False, option: str = "state_dir", elsewhere: str = ELSEWHERE) -> None:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise TinyclError(f"{option} {folder} is a file, not a folder: point {option} at a folder")
        try:            # a folder that cannot even be made would let the node learn without ever saving
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TinyclError(f"{option} {folder} cannot be created ({one_line(exc)}): point {option} at a folder "
                              "this process can write") from None
        try:            # nor one it cannot write (a read-only mount): every checkpoint failed, and the run exited 0
            tempfile.TemporaryFile(dir=folder, prefix=".write-test.").close()
        except OSError as exc:
            raise TinyclError(f"{option} {folder} cannot be written ({one_line(exc)}): point {option} at a folder "
                              "this process can write") from None
        self.path = state_path(folder, name)
        hold_lock(self.path, log, elsewhere)
        self.log, self.snapshot = log, snapshot
        self.every_n, self.every_s = int(every_n), float(every_s)
        self.pending = 0                      # samples learned since the last checkpoint
        self.journaled_bytes = 0              # bytes of :meth:`record_by_weight` since the last checkpoint
        self.checkpoint_bytes = 0             # the size of the last checkpoint (written, or loaded)
        self.dirty = False                    # something changed since the last checkpoint
        self.saved_at = time.monotonic()
        key = Path(os.path.realpath(self.path))     # a symlink loop: the load says so (Path.resolve raised)
        self._writer = _writers.setdefault(key, _Writer(key, log))
        self.ticket = 0                       # the last write this store asked for (:meth:`written`)
        self._writer.flush()                  # a store of this file opened before (a node configured again)
        if folder.is_dir():                   # temp files of a write cut short by a kill
            for tmp in folder.glob(f".{self.path.name}.*.tmp"):
                tmp.unlink(missing_ok=True)
        # what was learned since the last checkpoint (``record``), learned again after a restart (``replay``)
        self.journal = Journal(folder, name, log) if journal else None
        self.replaying = False                # the node is learning its journal again: no records, no checkpoints
        self._replay_from: int | None = None  # the first segment the loaded checkpoint does not hold
        self._journal_failures = RepeatedFailure(f"append to the journal {folder / name}.journal-*", log)
        self._unsaveable = ""                 # why the last snapshot could not be made into a checkpoint, if so

    # --- loading ------------------------------------------------------------------------------------
    def load(self, apply: Callable[[States], None] | None = None) -> States | None:
        """The saved states (after ``apply(states)`` restored them), or None: no file, or a bad one.

        Whatever goes wrong reading, parsing or applying the file moves it aside with one error
        line; the caller then starts fresh (rebuilding what ``apply`` may have half-restored). Except a state learned
        on another extractor (``model:=`` changed), or of another configuration (``OtherConfigError``): that file is
        sound, and moved aside it was lost to a user who started again with the right model; the node stops instead,
        with one line saying what to do.
        """
        try:
            states = load_states(self.path)
            self.checkpoint_bytes = self.path.stat().st_size if states is not None else 0
            if states is None:
                self._replay_from = self._journal_without_state()
                return None
            entry = states.pop(JOURNAL_ENTRY, None)
            if apply is not None:
                apply(states)
            self._replay_from = journal_segment(entry)   # None: a file from before journals, or of a node without one
            if self._replay_from is None and self.journal is not None and self.journal.segments():
                moved = self._orphan_journal()
                self.log.error("journal of %s beside a checkpoint that does not know it (written by a build without "
                               "journals: a downgrade?): its %d segments are moved aside (%s …), not learned onto it",
                               self.path, len(moved), moved[0].name)
            return states
        except OtherConfigError as exc:        # another extractor's (ExtractorMismatchError), fleet's, head kind's
            advice = f": {exc.what_to_do}" if exc.what_to_do else ""
            raise TinyclError(f"state file {self.path}: {exc}. Nothing was moved{advice}") from None
        except Exception as exc:  # noqa: BLE001 - a bad state file never stops a node
            aside = self.move_aside(one_line(exc) if not isinstance(exc, TinyclError) else str(exc).splitlines()[0])
            if self.journal is not None and self.journal.segments():   # learned after that checkpoint: no base
                suffix = aside.name[len(self.path.name):] if aside else ".bad"
                moved = self.journal.move_aside(suffix)
                self.log.error("its journal (%d segments) moved aside with it: %s", len(moved), moved[0].name)
            self._replay_from = None
            return None

    def _journal_without_state(self) -> int | None:
        """No state file: the journal is learned again from its start if it has one (no checkpoint came yet: its
        first segment is 1); else its checkpoint is gone (the file deleted) and it is moved aside, one line."""
        segments = self.journal.segments() if self.journal is not None else []
        if not segments or segments[0] == 1:
            return 0
        moved = self._orphan_journal()
        self.log.error("journal of %s without its state file (deleted?): its %d segments hold what was learned after "
                       "a checkpoint that is gone, and are moved aside (%s …); starting fresh", self.path,
                       len(moved), moved[0].name)
        return None

    def _orphan_journal(self) -> list[Path]:
        """Move the journal aside (``<name>.journal-<n>.orphan-<time>``): it has no checkpoint to be learned onto."""
        return self.journal.move_aside(f"{ORPHAN}{time.strftime('%Y%m%dT%H%M%S')}")

    def keep_copy(self) -> str:
        """Copy the state file aside as it is (``<name>.state.bad-<time>``) before the node saves over it: a node that
        restored what it could of it (one part could not be used). The words that say where."""
        aside = aside_path(self.path)
        try:
            shutil.copy2(self.path, aside)
        except OSError as exc:
            return f"no copy of the file could be kept ({one_line(exc)})"
        return f"the file as it was is kept as {aside.name}"

    def move_aside(self, why: str) -> Path | None:
        """Rename the state file ``<name>.state.bad-<time>`` (never overwritten) and say so in one line."""
        aside = aside_path(self.path)
        try:
            self.path.rename(aside)
        except OSError as exc:
            self.log.error("state file %s cannot be loaded (%s) nor moved aside (%s): starting fresh",
                           self.path, why, one_line(exc))
            return None
        self.log.error("state file %s cannot be loaded (%s): moved to %s, starting fresh", self.path, why, aside)
        return aside

    # --- the journal ----------------------------------------------------------------------------------
    def record(self, payload: bytes, sync: bool = False) -> None:
        """Append what the node just learned from to its journal (a store opened with ``journal``; not while it
        replays); ``sync``: see :meth:`record_durable`. A disk that refuses it is said as a failing checkpoint is
        (:class:`RepeatedFailure`)."""
        if self.journal is None or self.replaying:
            return
        try:
            self.journal.append(payload, sync)
        except OSError as exc:
            self._journal_failures.failed(one_line(exc))
            return
        self._journal_failures.landed()

    def replay(self, learn: Callable[[bytes], None]) -> int:
        """After :meth:`load`, with the node ready to learn: ``learn(payload)`` for each record the loaded checkpoint
        does not hold, in order (with :attr:`replaying` set: the node publishes nothing and records nothing); how
        many were learned. A record that raises is skipped (one line for them all)."""
        if self.journal is None or self._replay_from is None:
            return 0
        first, self._replay_from = self._replay_from, None
        done, failed, error = 0, 0, ""
        self.replaying = True
        try:
            for payload in self.journal.records(first):
                try:
                    learn(payload)
                    done += 1
                except Exception as exc:  # noqa: BLE001 - a record the node refuses now (a changed parameter)
                    failed, error = failed + 1, error or one_line(exc)
        finally:
            self.replaying = False
        if failed:      # not lost with the segments at the next checkpoint: a changed parameter can take them again
            self.log.error("journal: %d of %d records could not be learned again (the first: %s); %s", failed,
                           failed + done, error, self.journal.keep_segments_aside(first))
        if self.journal.segments():           # what comes next goes after what was replayed (a journal from
            self.journal.rotate()             # nothing stays at segment 1)
        self.dirty = self.dirty or done > 0    # (the node counted its samples as it learned them again)
        return done

    # --- checkpoints ----------------------------------------------------------------------------------
    def learned(self, n: int = 1) -> bool:
        """Count ``n`` learned samples; checkpoint when ``every_n`` are pending or ``every_s`` passed."""
        self.pending += n
        self.dirty = True
        if self.replaying:
            return False
        if self.pending >= self.every_n or time.monotonic() - self.saved_at >= self.every_s:
            return self.save(wait=False)
        return False

    def changed(self) -> None:
        """Something other than a sample changed (a merge, a request): saved by the next tick."""
        self.dirty = True

    def record_durable(self, payload: bytes) -> None:
        """:meth:`record_by_weight` a change that must survive a power cut, as a checkpoint does (the TinyRCE labeler's
        answers: a person's label), for a few hundred bytes instead of the whole state: a checkpoint in flight lands
        first (the records before it are in it), then the record and the rest of its segment are fsynced."""
        if self.journal is None or self.replaying:
            return
        self.flush()
        self.record_by_weight(payload, sync=True)

    def record_by_weight(self, payload: bytes, sync: bool = False) -> None:
        """:meth:`record` a change that asks for no checkpoint soon (the TinyRCE labeler's held camera views, the
        samples of its forming questions, the questions it asks, a person answers or skips and their pictures, the
        pseudo-labels a changeable answer passed on), and count its bytes: the store's timer (:meth:`tick`)
        checkpoints once such records weigh as much as the last checkpoint and it is ``every_s`` old, so that they
        cost at most twice their own bytes whatever the state's size, no checkpoint comes sooner than a change's
        would, and a restart replays about a checkpoint's worth. Not ``every_s`` after the first: the TinyRCE
        labeler wrote its whole state (1.4-1.8 MB) every minute a camera moved; nor every ``every_n``: at 3 held
        views a second that was still 1.4 MB every 5.5 minutes (docs/results.md). Nor here: a record is written
        before the node applies what it says, so a checkpoint taken here lacked it, and dropped the segment that
        held it once on disk (a kill -9 then lost it)."""
        self.record(payload, sync)
        self.journaled_bytes += len(payload)

    def tick(self) -> bool:
        """Call from a timer (between the node's callbacks): checkpoint a change that is ``every_s`` old, or records
        by weight (:meth:`record_by_weight`) that weigh as much as the last checkpoint."""
        if self.replaying or time.monotonic() - self.saved_at < self.every_s:
            return False
        if self.dirty or (self.journaled_bytes and self.journaled_bytes >= self.checkpoint_bytes):
            return self.save(wait=False)
        return False

    def save(self, states: States | None = None, wait: bool = True) -> bool:
        """Write the state now (``states``, else ``snapshot()``), taken here and written by the file's writer thread;
        ``wait``: return once it is on disk. A failure is one error line, not a crash (False: not written, or with
        ``wait`` False not taken)."""
        if self.replaying:                    # the checkpoint comes after the replay
            return False
        try:
            states = self.snapshot() if states is None else states
            if states is None:
                return False
            after = None
            if self.journal is not None:      # what is learned from now on goes into a segment this one names
                segment = self.journal.rotate()
                states = {**states, JOURNAL_ENTRY: st.make_state("Journal", 1, {}, {}, {"segment": segment})}
                after = partial(self.journal.drop_before, segment)
            payload = file_bytes(states)
        except Exception as exc:  # noqa: BLE001 - a state that cannot be serialised: keep learning, say so
            self._unsaveable = one_line(exc)
            self.log.error("cannot save state to %s: %s", self.path, self._unsaveable)
            return False
        self._unsaveable = ""
        self.pending, self.dirty, self.saved_at = 0, False, time.monotonic()
        self.journaled_bytes, self.checkpoint_bytes = 0, len(payload)
        self.ticket, ok = self._writer.write(payload, wait, after)
        return ok

    def health(self) -> StoreHealth:
        """When a checkpoint last reached the disk, and whether saving (or journaling) fails now: for the node's
        diagnostics, read once a period (a checkpoint of an earlier run: the file's time, one stat)."""
        w = self._writer
        saved_at = w.landed_at
        if not saved_at:
            try:
                saved_at = self.path.stat().st_mtime
            except OSError:
                saved_at = 0.0
        return StoreHealth(self.path, saved_at, w.failed_total, self._unsaveable or w.error,
                           self._journal_failures.error)

    def written(self, ticket: int) -> bool:
        """Whether the save that got ``ticket`` (:attr:`ticket` after it) is on disk."""
        return self._writer.written(ticket)

    def flush(self) -> None:
        """Return once every save asked for so far is on disk."""
        self._writer.flush()
