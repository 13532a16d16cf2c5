"""Run ops against a real libbpf in a child process that may crash, hang or exit.

Rules and invariants:
- ``HandleRef(n)`` in ``Unregister`` means: the value returned by the n-th
  (0-based) ``Register`` executed by this chain copy since it began, counting
  every ``Register`` of every batch, failed ones (negative rc) included.  A
  crash, ``reset()`` or ``close()`` ends the copy and the numbering starts
  again at 0.  ``Worker.run`` refuses (``BadArgumentError``) a batch that
  names a registration that has not happened, before sending anything.
  ``run_inprocess(lib, ops)`` numbers the Registers of ``ops`` alone.
- Pipelining: ``run`` cuts its ops into several messages (``split``: small
  first and last, up to ``chunk`` ops between) and writes them without
  blocking while it reads and decodes earlier replies (``Exchange``), so both
  processes work at once and neither can deadlock the other on a full pipe.
  ``submit`` returns after the first step, and the caller's ``Flight.poll()``
  moves the exchange on between its own work (the campaign plans the next
  batch meanwhile, in the same thread).  The copy executes the ops strictly
  in order either way.  Messages still queued when a copy dies reach the
  child, which skips them; a message whose writing began is always written
  whole, so the pipe never holds half a message.
- A hang is "no reply and no progress for ``timeout`` seconds": the deadline is
  pushed back whenever the progress counter moves, so ``timeout`` bounds one op,
  not a batch.  Only time this process spent watching counts: when its caller
  was away longer than one check (``Flight.poll`` between a busy campaign's
  own work), what came in meanwhile is read before a hang is declared, so a
  parent slowed by its own work or a loaded machine never calls a copy that
  answered (or died) in time hung.  A hung copy is SIGKILLed (by the pid in
  the progress file); a child that does not then report the copy's end is
  SIGKILLed too.
- Every death becomes a ``CrashEvent`` (``hang``, ``crash`` or ``exit``: see
  ``oracle.libbpf.reports``).  A batch that dies yields no answers
  (``BatchResult.results == ()``); the prefix ``event.ops[:-1]`` replays
  deterministically on a fresh copy.
- Hygiene: a dead or stopped child is always ``wait()``ed and its pipes
  closed; the temp dir with the stderr and progress files is removed by
  ``close()``.  The child and its copy exit on EOF, so they cannot outlive a
  killed parent for long.

The other jobs live beside it: ``oracle.libbpf.child`` (the child and its copies),
``oracle.libbpf.wire`` (the wire format), ``oracle.libbpf.reports`` (reading a
dead process's stderr) and ``oracle.libbpf.results`` (``OpResult``, shared by both sides).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeAlias

from oracle.errors import BadArgumentError, LibbpfError
from oracle.libbpf.child import CASE_PID_OFFSET, PROGRESS, PROGRESS_FILE_SIZE
from oracle.libbpf.reports import CrashKind, classify, stack_frames
from oracle.libbpf.results import OpResult, to_result
from oracle.libbpf.wire import HEADER, READ_SIZE, encode, split
from oracle.ops import HandleRef, Op, Register, Unregister

SYMBOLIZER: Final = Path("/usr/lib/llvm-14/bin/llvm-symbolizer")
STDERR_TAIL_BYTES: Final = 64 * 1024
DEFAULT_TIMEOUT: Final = 10.0
START_TIMEOUT: Final = 60.0
REAP_TIMEOUT: Final = 30.0
HANG_CHECKS: Final = 4
#: ops per wire message; a run is cut into several so that both processes work at once
PIPELINE_CHUNK: Final = 256

_Status: TypeAlias = Literal["ok", "eof", "hang"]


# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class CrashEvent:
    """How a worker died, and on which op (see module rules)."""

    kind: CrashKind
    signal: int | None
    exit_code: int | None
    sanitizer: str | None  # "heap-buffer-overflow", "SEGV", "double-free", "pointer-overflow"...
    message: str | None  # the report's first line, or glibc's last word
    frames: tuple[str, ...]  # top frames: "func file:line:col" or "func (module+0xoff)"
    op_index: int  # index in the batch of the op that was running
    ops: tuple[Op, ...]  # every op since the worker started, up to the running one
    stderr_tail: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Answers of a batch, or how the worker died running it."""

    results: tuple[OpResult, ...] = ()
    crash: CrashEvent | None = None


# ---------------------------------------------------------------------------
# the parent


def check_handle_refs(ops: Sequence[Op], registers: int) -> None:
    """Refuse ``ops`` naming a registration that will not have happened (``registers`` so far)."""
    for op in ops:
        if type(op) is Register:
            registers += 1
        elif (
            type(op) is Unregister
            and isinstance(op.handler, HandleRef)
            and not 0 <= op.handler.index < registers
        ):
            raise BadArgumentError(
                f"{op.handler} names a registration that has not happened in this worker"
            )


def wait_for_exit(pid: int, timeout: float) -> None:
    """Block until ``pid`` exits or ``timeout`` passes, without polling.

    ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms; a pidfd becomes
    readable the moment the process exits (Linux >= 5.3; elsewhere a no-op).
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


class TargetLike(Protocol):
    """What ``Worker`` needs of ``oracle.libbpf.targets.Target``."""

    @property
    def path(self) -> Path: ...

    def env(self, host: Literal["python", "atheris"] = "python") -> dict[str, str]: ...


def merge_options(current: str, wanted: dict[str, str]) -> str:
    """Add ``key=value`` pairs to a sanitizer options string unless the key is set."""
    present = {item.split("=", 1)[0] for item in current.split(":") if item}
    extra = [f"{k}={v}" for k, v in wanted.items() if k not in present]
    return ":".join([item for item in current.split(":") if item] + extra)


def child_env(target: TargetLike) -> dict[str, str]:
    """The parent's environment plus the target's, plus what report parsing relies on."""
    env = dict(os.environ)
    env.update(target.env("python"))
    if SYMBOLIZER.exists():
        env.setdefault("ASAN_SYMBOLIZER_PATH", str(SYMBOLIZER))
    env["UBSAN_OPTIONS"] = merge_options(
        env.get("UBSAN_OPTIONS", ""), {"print_stacktrace": "1", "report_error_type": "1"}
    )
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class _Child:
    """One running child process and its files; ``reap()`` makes it disappear cleanly."""

    def __init__(self, target: TargetLike, tmpdir: Path, *, log: bool = True) -> None:
        self.stderr_path = tmpdir / "stderr"
        progress_path = tmpdir / "progress"
        progress_path.write_bytes(bytes(PROGRESS_FILE_SIZE))
        with open(progress_path, "r+b") as f:
            self.progress = mmap.mmap(f.fileno(), PROGRESS_FILE_SIZE)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "oracle.libbpf.child",
                    str(target.path),
                    str(progress_path),
                    *([] if log else ["--no-log"]),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(target),
                close_fds=True,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        self.buffer = bytearray()
        #: the message being written; once begun, its rest goes before anything else, so
        #: the pipe never holds half a message (see ``exchange``)
        self.outgoing = memoryview(b"")
        self.begun = False

    def started(self) -> int:
        """Ops the child has started since it began (for a fresh case: since the case began)."""
        return int(PROGRESS.unpack_from(self.progress, 0)[0])

    def case_pid(self) -> int:
        """The pid of the copy running a fresh case, or 0."""
        return int(PROGRESS.unpack_from(self.progress, CASE_PID_OFFSET)[0])

    def stderr_size(self) -> int:
        try:
            return self.stderr_path.stat().st_size
        except OSError:
            return 0

    def stderr_since(self, offset: int) -> str:
        """What the child (and its copies) wrote to stderr from ``offset`` on."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                return f.read(STDERR_TAIL_BYTES).decode("utf-8", "backslashreplace")
        except OSError:
            return ""

    def exchange(
        self,
        batches: Sequence[tuple[Op, ...] | bytes],
        expected: int,
        timeout: float,
        on_reply: Callable[[Any], bool],
        kind: str = "batch",
    ) -> _Status:
        """Send ``batches`` while reading ``expected`` replies, each passed to ``on_reply``
        (``Exchange``, run to its end)."""
        return Exchange(self, batches, expected, timeout, on_reply, kind).finish()

    def _stopped(self, status: _Status) -> _Status:
        """Leave ``exchange`` early: a message not yet begun is dropped, a begun one is
        finished by the next ``exchange`` (the child skips batches meant for a dead copy)."""
        if not self.begun:
            self.outgoing = memoryview(b"")
        return status

    def _pump(self, wait: float) -> Literal["ok", "eof"]:
        """One select(): write what the pipe takes, read what is there."""
        writing = [self.wfd] if self.outgoing else []
        readable, writable, _ = select.select([self.rfd], writing, [], wait)
        if writable:
            try:
                written = os.write(self.wfd, self.outgoing)
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, ConnectionResetError):
                return "eof"
            self.outgoing = self.outgoing[written:]
            self.begun = bool(self.outgoing) and (self.begun or written > 0)
        if readable:
            chunk = os.read(self.rfd, READ_SIZE)
            if not chunk:
                return "eof"
            self.buffer += chunk
        return "ok"

    def _take(self) -> Any:
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.buffer, 0)
        end = HEADER.size + size
        if len(self.buffer) < end:
            return None
        payload = bytes(self.buffer[HEADER.size : end])
        del self.buffer[:end]
        return pickle.loads(payload)

    def stderr_tail(self) -> str:
        """The last ``STDERR_TAIL_BYTES`` the child wrote to stderr."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - STDERR_TAIL_BYTES))
                return f.read().decode("utf-8", "backslashreplace")
        except OSError:
            return ""

    def reap(self, *, kill: bool, quit_first: bool = False) -> int | None:
        """Stop the child (politely if asked), wait for it, close pipes and the mapping."""
        if quit_first:  # a chain copy reading the pipe ends at EOF, then the child itself
            with contextlib.suppress(OSError):
                os.write(self.wfd, encode(("quit",)))
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
        if kill and self.proc.poll() is None:
            self.proc.kill()
        wait_for_exit(self.proc.pid, REAP_TIMEOUT)
        try:
            returncode = self.proc.wait(timeout=REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            returncode = self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.progress.close()
        return returncode


def until_exit(replies: list[Any]) -> Callable[[Any], bool]:
    """An ``on_reply`` that keeps every reply in ``replies`` and stops at the child's
    ``("case-exit", code)``."""

    def on_reply(message: Any) -> bool:
        replies.append(message)
        return bool(message[0] != "case-exit")

    return on_reply


class Exchange:
    """Messages to a child and its replies, in progress; ``step`` moves it on.

    Each batch goes as ``(kind, batch)``; a ``bytes`` item is an already
    encoded message (``("chain",)``, ``("end",)``) sent as it is.  Writing
    and reading interleave (the child works on one message while the next is
    queued and earlier replies are decoded here), and neither side can block
    the other on a full pipe.  ``on_reply`` returning False stops early.
    ``hang`` means ``timeout`` s without a reply or progress.  ``step(0)``
    never blocks, so the caller can do its own work between steps while the
    child works on what was sent (``Worker.submit``).
    """

    def __init__(self, child: _Child, batches: Sequence[tuple[Op, ...] | bytes], expected: int,
                 timeout: float, on_reply: Callable[[Any], bool], kind: str = "batch") -> None:
        self.child = child
        self.later = list(reversed(batches))
        self.expected = expected
        self.timeout = timeout
        self.on_reply = on_reply
        self.kind = kind
        self.last, self.deadline = child.started(), time.monotonic() + timeout
        self.looked = time.monotonic()  # when a step last ran (module rules: time watched)
        self.status: _Status | None = None if expected else "ok"

    def step(self, wait: float) -> _Status | None:
        """Take the replies that are in, write and read what the pipes take (waiting at
        most ``wait`` s); the final status once the exchange is over, else None."""
        if self.status is not None:
            return self.status
        child = self.child
        now, check = time.monotonic(), self.timeout / HANG_CHECKS
        if now - self.looked > check + wait:  # the caller was away: read what came first
            self.deadline = max(self.deadline, now + check)
        self.looked = now
        while self.expected:
            message = child._take()
            if message is None:
                break
            self.expected -= 1
            if not self.on_reply(message):
                return self._end("ok", early=True)
            self.deadline = time.monotonic() + self.timeout
        if not self.expected:
            return self._end("ok")
        if not child.outgoing and self.later:  # encode one message ahead, not all up front
            item = self.later.pop()
            child.outgoing = memoryview(item if isinstance(item, bytes) else
                                        encode((self.kind, item)))
            child.begun = False
        status = child._pump(wait)
        if status != "ok":
            return self._end(status, early=True)
        now, started = time.monotonic(), child.started()
        if started != self.last:
            self.last, self.deadline = started, now + self.timeout
        elif now >= self.deadline:
            return self._end("hang", early=True)
        return None

    def finish(self) -> _Status:
        """Step until the exchange is over; progress is checked every
        ``timeout / HANG_CHECKS`` s."""
        while (status := self.step(self.timeout / HANG_CHECKS)) is None:
            pass
        return status

    def _end(self, status: _Status, *, early: bool = False) -> _Status:
        self.status = self.child._stopped(status) if early else status
        return self.status


class Flight:
    """A batch submitted to a ``Worker`` (``Worker.submit``), until its ``result()``."""

    def __init__(self, worker: Worker, child: _Child, ops: tuple[Op, ...], base: int,
                 offset: int) -> None:
        self.worker = worker
        self.child = child
        self.base = base  # ops the chain copy ran before this batch
        self.offset = offset  # the child's stderr size when the batch was sent
        self.results: list[OpResult] = []
        self.failure: list[Any] = []
        self.exchange: Exchange | None = None
        self._result: BatchResult | None = None if ops else BatchResult()

    def on_reply(self, message: Any) -> bool:
        if message[0] == "ok":
            self.results.extend(map(to_result, message[1]))
            return True
        self.failure.append(message)
        return False

    def poll(self) -> None:
        """Move the pipes on without blocking (cheap: one select())."""
        if self.exchange is not None:
            self.exchange.step(0.0)

    def result(self) -> BatchResult:
        """Wait for the batch's answers, or how the copy died."""
        if self._result is None:
            assert self.exchange is not None
            self._result = self.worker._land(self, self.exchange.finish())
        return self._result


class Worker:
    """The parent side: batches of ops to forked copies of a pristine child process."""

    def __init__(
        self, target: TargetLike, *, timeout: float = DEFAULT_TIMEOUT, chunk: int = PIPELINE_CHUNK,
        log: bool = True,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.chunk = chunk
        self.log = log  # capture libbpf's log lines (off: faster, OpResult.log stays empty)
        self.version: str | None = None
        self._tmpdir = Path(tempfile.mkdtemp(prefix="sec-oracle-worker-"))
        # close() forgotten: the temp dir still goes at garbage collection or exit
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmpdir, ignore_errors=True)
        self._child: _Child | None = None
        self._chain = False  # a chain copy is serving ``run``
        self._flight: Flight | None = None  # a ``submit`` whose result is not taken yet
        self._history: list[Op] = []
        self._registers = 0

    # -- lifecycle -------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The pristine child's pid, if one runs (it outlives every copy's death)."""
        return self._child.proc.pid if self._child else None

    def start(self) -> None:
        """Start the pristine child now (``run`` does it on demand)."""
        if self._child is None:
            self._child = _Child(self.target, self._tmpdir, log=self.log)
            self._chain = False
            self._history, self._registers = [], 0
            self._await_ready(self._child)

    def _await_ready(self, child: _Child) -> None:
        replies: list[Any] = []

        def on_reply(message: Any) -> bool:
            replies.append(message)
            return True

        status = child.exchange((), 1, START_TIMEOUT, on_reply)
        if status == "ok" and replies[0][0] == "ready":
            self.version = str(replies[0][1])
            return
        self._child = None
        detail = replies[0][2] if replies else ""
        child.reap(kill=True)
        tail = child.stderr_tail().strip().splitlines()[-5:]
        raise LibbpfError(
            f"libbpf worker for {self.target.path} did not start ({status}): "
            f"{detail or ' | '.join(tail) or 'no output'}"
        )

    def reset(self) -> None:
        """Fresh libbpf state for the next ``run``: the chain copy ends (a fork, not a
        new process, starts the next one); ``HandleRef`` s number from 0 again."""
        self._settle()
        self._history, self._registers = [], 0
        if self._child is None or not self._chain:
            return
        self._chain = False
        ended: list[Any] = []
        status = self._child.exchange([encode(("end",))], 1, REAP_TIMEOUT, until_exit(ended))
        if status != "ok" or not ended or ended[-1][0] != "case-exit":
            self._stop()

    def _settle(self) -> None:
        """Let a flight whose result nobody took land (its answers are dropped)."""
        if self._flight is not None:
            self._flight.result()

    def _stop(self) -> None:
        """Stop the pristine child (and any copy); the next ``run`` starts a new one.

        With a batch still in flight (an exception or Ctrl-C mid-campaign) the
        copy would block on replies nobody reads: it and the child are killed
        rather than asked to quit."""
        busy, self._flight = self._flight is not None, None
        if self._child is not None:
            child, self._child = self._child, None
            if busy and (pid := child.case_pid()) > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            child.reap(kill=busy, quit_first=not busy)

    def close(self) -> None:
        """Stop the child and remove the worker's temp files."""
        self._stop()
        self._cleanup()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- running ---------------------------------------------------------------

    def run(self, ops: Sequence[Op]) -> BatchResult:
        """Run ``ops`` in order in the chain copy; a death comes back as ``BatchResult.crash``."""
        return self.submit(ops).result() if ops else BatchResult()

    def submit(self, ops: Sequence[Op]) -> Flight:
        """Start ``run(ops)`` and return at once: the chain copy works while the caller
        does its own, calling ``Flight.poll()`` now and then to keep the pipes moving.
        One flight at a time: its ``result()`` comes before anything else of this worker."""
        if self._flight is not None:
            raise BadArgumentError("a batch is in flight: take its result() first")
        ops = tuple(ops)
        self.start()
        check_handle_refs(ops, self._registers)
        child = self._child
        assert child is not None
        flight = Flight(self, child, ops, len(self._history), child.stderr_size())
        if not ops:
            return flight
        self._history.extend(ops)
        self._registers += sum(1 for op in ops if type(op) is Register)
        messages: list[tuple[Op, ...] | bytes] = list(split(ops, self.chunk))
        replies = len(messages)  # one per batch message; ("chain",) has none
        if not self._chain:
            messages.insert(0, encode(("chain",)))
            self._chain = True
        flight.exchange = Exchange(child, messages, replies, self.timeout, flight.on_reply)
        self._flight = flight
        flight.poll()
        return flight

    def _land(self, flight: Flight, status: _Status) -> BatchResult:
        """``flight`` is over with ``status``: its results, or how the copy died."""
        self._flight = None
        # the exchange calls back into the flight: drop it, so that the flight and its
        # answers go by reference counting, not only at the next full garbage collection
        flight.exchange = None
        child, failure, base = flight.child, flight.failure, flight.base
        if status == "ok" and not failure:
            return BatchResult(tuple(flight.results))
        hung = status == "hang"
        started = child.started()
        code = self._copy_exit(child, failure, status)
        running = min(max(started, base + 1), len(self._history))
        if failure and failure[0][0] == "error":
            self._stop()
            _, seq, text = failure[0]
            raise LibbpfError(f"worker failed on op {seq - base} of the batch: {text}")
        event = self._crash_event(child, code, hung, flight.offset, running - 1 - base,
                                  tuple(self._history[:running]))
        self.reset()
        return BatchResult(crash=event)

    def _copy_exit(self, child: _Child, replies: list[Any], status: str) -> int:
        """How the copy ended (``os.waitstatus_to_exitcode``), from the child's
        ``("case-exit", code)`` after ``exchange`` returned ``status``; a hung copy
        is killed first.  If the pristine child itself died or hangs, it is
        stopped and its own exit status returned (SIGKILL for a hang)."""
        hung = status == "hang"
        if hung and (pid := child.case_pid()) > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        on_reply = until_exit(replies)
        self._chain = False
        waited = False
        while True:
            for reply in replies:
                if reply[0] == "case-exit":
                    return int(reply[1])
            if status == "eof" or (status == "hang" and waited):
                break
            status, waited = child.exchange((), 1, REAP_TIMEOUT, on_reply), True
        self._child = None  # the pristine child is gone or stuck: a new one starts next time
        code = child.reap(kill=True)
        if hung or status == "hang":
            return -signal.SIGKILL
        return code if code is not None else 70

    def _crash_event(self, child: _Child, code: int, hung: bool, offset: int, op_index: int,
                     ops: tuple[Op, ...]) -> CrashEvent:
        stderr = child.stderr_since(offset)
        kind, sig, exit_code, sanitizer, message = classify(code, hung, stderr)
        return CrashEvent(
            kind=kind, signal=sig, exit_code=exit_code, sanitizer=sanitizer, message=message,
            frames=stack_frames(stderr), op_index=op_index, ops=ops, stderr_tail=stderr[-4096:],
        )

    def run_fresh(self, ops: Sequence[Op]) -> BatchResult:
        """Run ``ops`` from libbpf's state at start (nothing registered, ids from 1).

        The child forks a copy per call (about a millisecond instead of a new
        process); a running chain copy is ended first (``reset``).
        ``HandleRef`` s number the ``Register`` s of ``ops`` alone.  A death of
        the copy is a ``CrashEvent`` whose ``ops`` are those of this call up to
        the running one.
        """
        ops = tuple(ops)
        if not ops:
            return BatchResult()
        check_handle_refs(ops, 0)
        self.reset()  # settles a flight too
        self.start()
        child = self._child
        assert child is not None
        offset = child.stderr_size()
        results: list[OpResult] = []
        replies: list[Any] = []

        def on_reply(message: Any) -> bool:
            if message[0] == "ok":
                results.extend(map(to_result, message[1]))
                return True
            replies.append(message)
            return bool(message[0] != "case-exit")

        status = child.exchange((ops,), 2, self.timeout, on_reply, kind="case")
        hung = status == "hang"
        started = child.started()
        code = self._copy_exit(child, replies, status)
        errors = [r for r in replies if r[0] == "error"]
        if errors:
            _, index, text = errors[0]
            raise LibbpfError(f"worker failed on op {index} of the case: {text}")
        if code == 0 and not hung and len(results) == len(ops):
            return BatchResult(tuple(results))
        running = min(max(started, 1), len(ops))
        return BatchResult(crash=self._crash_event(child, code, hung, offset, running - 1,
                                                   ops[:running]))
