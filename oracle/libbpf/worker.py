"""Run ops against a real libbpf in a child process that may crash, hang or exit.

Rules and invariants:
- One child process loads one libbpf ``.so`` (``Libbpf``) and stays
  *pristine*: it never runs an op itself.  Every op runs in a forked copy of
  it, so every copy starts from libbpf as loaded (empty registry, handler ids
  from 1, the print callback set) -- the state of a brand-new process, at fork
  cost (~2 ms; ~6 ms with ASan) instead of a new process (~85 ms).  The parent
  (``Worker``) never loads the library; it survives every way a copy or the
  child can die.
- Two kinds of copy.  A *chain* copy serves ``Worker.run`` / ``submit``
  batches until ``reset()`` ends it or it dies; the next batch forks a new
  one.  A *case* copy runs one ``Worker.run_fresh`` case and exits.  Only one
  copy lives at a time.  When a copy ends, the child reports how
  (``("case-exit", code)``, ``code`` as ``os.waitstatus_to_exitcode`` gives
  it); the child reaps its copies, the parent reaps the child.
- ``execute(session, op)`` is the one op-execution function; the copies and
  ``run_inprocess`` (benchmarks, tests) all call it.
- ``HandleRef(n)`` in ``Unregister`` means: the value returned by the n-th
  (0-based) ``Register`` executed by this chain copy since it began, counting
  every ``Register`` of every batch, failed ones (negative rc) included.  A
  crash, ``reset()`` or ``close()`` ends the copy and the numbering starts
  again at 0.  ``Worker.run`` refuses (``BadArgumentError``) a batch that
  names a registration that has not happened, before sending anything.
  ``run_inprocess(lib, ops)`` numbers the Registers of ``ops`` alone.
- Wire: each message is a 4-byte little-endian length followed by a pickle.
  Parent -> child: ``("chain",)``, ``("batch", ops)``, ``("end",)``,
  ``("case", ops)``, ``("quit",)``.  Child -> parent: ``("ready", version)``,
  ``("ok", raw_results)``, ``("error", seq, text)`` (``seq``: the failing
  op's 0-based number in the copy), ``("case-exit", code)``.  Ops travel as
  the ``oracle.ops`` dataclasses; a private pickle dispatch table
  (``WIRE_TABLE``, not copyreg's global one) pickles them as ``cls(*fields)``,
  3-4x cheaper than the default slots state and still validated by
  ``__init__``.  The protocol uses the child's stdin/stdout, which the child
  moves to private fds at start; its fd 1 then points at its stderr file so
  that stray output cannot corrupt the protocol.  The child reads its pipe
  unbuffered (``read_exactly``): a copy reads the same pipe, and no byte may
  sit in a buffer of the child that a copy has already consumed.
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
- Progress: before each op the copy stores "ops started since the copy
  began" (int64, little-endian) into a shared 16-byte file mapping, and its
  pid at offset 8; after a death the parent reads the count to name the exact
  op (``CrashEvent.op_index``); a death between ops (decoding, replying) names
  the last op started.
- A hang is "no reply and no progress for ``timeout`` seconds": the deadline is
  pushed back whenever the progress counter moves, so ``timeout`` bounds one op,
  not a batch.  A hung copy is SIGKILLed (by the pid in the progress file); a
  child that does not then report the copy's end is SIGKILLed too.
- Every death becomes a ``CrashEvent``: ``hang``; ``crash`` when a signal
  killed the copy or a sanitizer report is in what it wrote to stderr;
  ``exit`` otherwise.  A batch that dies yields no answers
  (``BatchResult.results == ()``); the prefix ``event.ops[:-1]`` replays
  deterministically on a fresh copy.
- Hygiene: a dead or stopped child is always ``wait()``ed and its pipes
  closed; the temp dir with the stderr and progress files is removed by
  ``close()``.  The child and its copy exit on EOF, so they cannot outlive a
  killed parent for long.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import io
import mmap
import operator
import os
import pickle
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeAlias

from oracle.bpfelf import ObjectSpec, Program
from oracle.errors import BadArgumentError, LibbpfError
from oracle.libbpf import lifecycle
from oracle.libbpf.binding import Libbpf, LogLine
from oracle.model.objects import LIFECYCLE_OPS
from oracle.ops import (
    Answer,
    AttachTypeByName,
    Callback,
    CallbackCall,
    Fault,
    HandleRef,
    HandlerOpts,
    ObjRef,
    Op,
    OutValue,
    ProgTypeByName,
    Register,
    Unregister,
    resolve_handler,
)

HEADER: Final = struct.Struct("<I")
PROGRESS: Final = struct.Struct("<q")
#: the progress file: ops started (offset 0) and the pid running a fresh case (offset 8)
PROGRESS_FILE_SIZE: Final = 16
CASE_PID_OFFSET: Final = 8
PICKLE_PROTOCOL: Final = 5
SYMBOLIZER: Final = Path("/usr/lib/llvm-14/bin/llvm-symbolizer")
STDERR_TAIL_BYTES: Final = 64 * 1024
MAX_FRAMES: Final = 16
DEFAULT_TIMEOUT: Final = 10.0
START_TIMEOUT: Final = 60.0
REAP_TIMEOUT: Final = 30.0
HANG_SLEEP: Final = 3600.0
HANG_CHECKS: Final = 4
#: ops per wire message; a run is cut into several so that both processes work at once
PIPELINE_CHUNK: Final = 256
FIRST_CHUNK: Final = 16
READ_SIZE: Final = 64 * 1024  # a pipe's capacity; larger reads make malloc mmap() each time

#: (rc, out, log, calls): what ``execute`` returns and the child sends back
RawResult: TypeAlias = tuple[
    int, tuple[OutValue, ...], tuple[LogLine, ...], tuple[CallbackCall, ...]
]
CrashKind: TypeAlias = Literal["crash", "hang", "exit"]
_Status: TypeAlias = Literal["ok", "eof", "hang"]


# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class OpResult:
    """libbpf's answer to one op (callback calls included), with the log lines it caused."""

    answer: Answer
    log: tuple[LogLine, ...] = ()


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


def to_result(raw: RawResult) -> OpResult:
    """An ``OpResult`` from ``execute``'s raw tuple."""
    return OpResult(Answer(raw[0], raw[1], raw[3]), raw[2])


# ---------------------------------------------------------------------------
# executing ops (shared by the child and run_inprocess)


@dataclass
class Session:
    """One process's libbpf and the ``Register`` results that ``HandleRef`` resolves against."""

    lib: Libbpf
    register_results: list[int] = field(default_factory=list)
    #: per ``Open``: (bpf_object, its programs), None once failed or closed (lifecycle.py)
    objects: list[tuple[Any, list[Any]] | None] = field(default_factory=list)


def _register(session: Session, op: Register) -> tuple[int, tuple[int | None, ...]]:
    index = len(session.register_results)
    rc = session.lib.register(op.sec, op.prog_type, op.exp_attach_type, op.opts, index)
    session.register_results.append(rc)
    return rc, ()


def _unregister(session: Session, op: Unregister) -> tuple[int, tuple[int | None, ...]]:
    return session.lib.unregister(resolve_handler(op, session.register_results)), ()


def _prog_type(session: Session, op: ProgTypeByName) -> tuple[int, tuple[int | None, ...]]:
    return session.lib.prog_type_by_name(op.name)


def _attach_type(session: Session, op: AttachTypeByName) -> tuple[int, tuple[int | None, ...]]:
    return session.lib.attach_type_by_name(op.name)


def _fault(session: Session, op: Fault) -> tuple[int, tuple[int | None, ...]]:
    if op.kind == "null_out":
        return session.lib.prog_type_by_name_null_outs(op.name), ()
    if op.kind == "abort":
        session.lib.abort()
    elif op.kind == "hang":
        while True:
            time.sleep(HANG_SLEEP)
    raise BadArgumentError(f"unknown fault kind {op.kind!r}")


DISPATCH: Final[dict[type, Callable[[Session, Any], tuple[int, tuple[OutValue, ...]]]]] = {
    Register: _register,
    Unregister: _unregister,
    ProgTypeByName: _prog_type,
    AttachTypeByName: _attach_type,
    Fault: _fault,
    **lifecycle.DISPATCH,
}


def execute(session: Session, op: Op) -> RawResult:
    """Run one op against ``session.lib``; capture its log lines and callback calls."""
    lib = session.lib
    lib.log.clear()
    lib.calls.clear()
    rc, out = DISPATCH[type(op)](session, op)
    return rc, out, tuple(lib.log), tuple(lib.calls)


def run_inprocess(lib: Libbpf | Session, ops: Sequence[Op]) -> list[OpResult]:
    """Run ``ops`` in this process (no crash protection); a ``Libbpf`` gets a fresh Session."""
    session = lib if isinstance(lib, Session) else Session(lib)
    return [to_result(execute(session, op)) for op in ops]


# ---------------------------------------------------------------------------
# framing


def _reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """Pickle ``cls`` as ``cls(*fields)``: 3-4x faster than the dataclass slots state."""
    names = [f.name for f in dataclasses.fields(cls)]
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda obj: (cls, (one(obj),))
    many = operator.attrgetter(*names)
    return lambda obj: (cls, many(obj))


#: a private dispatch table (not copyreg's global one) for the wire's dataclasses
WIRE_TABLE: Final = {
    cls: _reducer(cls)
    for cls in (
        Register,
        Unregister,
        ProgTypeByName,
        AttachTypeByName,
        Fault,
        HandlerOpts,
        Callback,
        HandleRef,
        LogLine,
        CallbackCall,
        *LIFECYCLE_OPS,
        ObjRef,
        ObjectSpec,
        Program,
    )
}


def encode(message: object) -> bytes:
    """A length-prefixed pickle; the wire's dataclasses are rebuilt through their ``__init__``."""
    buffer = io.BytesIO()
    buffer.write(bytes(HEADER.size))
    pickler = pickle.Pickler(buffer, protocol=PICKLE_PROTOCOL)
    pickler.dispatch_table = WIRE_TABLE
    pickler.dump(message)
    data = buffer.getbuffer()
    HEADER.pack_into(data, 0, len(data) - HEADER.size)
    return bytes(data)


def read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``, or ``None`` at EOF.

    Unbuffered on purpose: a forked copy reads from the same pipe, so nothing
    may sit in a user-space buffer that the copy consumes and this process
    would read again after the copy has gone.
    """
    parts: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, READ_SIZE))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def read_message(fd: int) -> Any:
    """The next message from a blocking fd, or ``None`` at EOF."""
    header = read_exactly(fd, HEADER.size)
    if header is None:
        return None
    payload = read_exactly(fd, HEADER.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


def split(ops: tuple[Op, ...], cap: int, first: int = FIRST_CHUNK) -> list[tuple[Op, ...]]:
    """``ops`` cut into wire messages: small at both ends, up to ``cap`` in the middle.

    A small first message gets the child working early; a small last one
    leaves the parent little to decode after the child has finished.
    """
    front: list[int] = []
    back: list[int] = []
    size, remaining = max(1, min(first, cap)), len(ops)
    while remaining > 0:
        for side in (front, back):
            take = min(size, remaining)
            if take:
                side.append(take)
                remaining -= take
        size = min(size * 2, cap)
    pieces: list[tuple[Op, ...]] = []
    start = 0
    for take in front + back[::-1]:
        pieces.append(ops[start : start + take])
        start += take
    return pieces


# ---------------------------------------------------------------------------
# the child


def child_main(argv: Sequence[str]) -> int:
    """``python -m oracle.libbpf.worker LIBBPF_SO PROGRESS_FILE [--no-log]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    reader = os.dup(0)
    writer = open(os.dup(1), "wb")  # noqa: SIM115 - lives as long as the process
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    with open(argv[1], "r+b") as f:
        progress = mmap.mmap(f.fileno(), PROGRESS_FILE_SIZE)
    try:
        session = Session(Libbpf(argv[0], log="--no-log" not in argv[2:]))
    except LibbpfError as exc:
        writer.write(encode(("error", -1, str(exc))))
        writer.flush()
        return 3
    writer.write(encode(("ready", session.lib.version())))
    writer.flush()
    serve(session, reader, writer, progress)
    return 0


def serve(session: Session, reader: int, writer: Any, progress: mmap.mmap) -> None:
    """The pristine child: a forked copy per ``("chain",)`` and per ``("case", ops)``.

    It never runs an op itself, so every copy starts from libbpf as loaded.
    It stops at EOF or ``("quit",)``.  Other messages were queued for a copy
    that died before reading them (the parent pipelines): they are skipped.
    """
    while True:
        message = read_message(reader)
        if message is None or message[0] == "quit":
            return
        if message[0] == "chain":
            in_copy(progress, writer, functools.partial(serve_batches, session, reader, writer,
                                                        progress))
        elif message[0] == "case":
            in_copy(progress, writer, functools.partial(run_case, session, message[1], writer,
                                                        progress), collect=False)
        # anything else was sent to a copy that died before reading it: skipped


def serve_batches(session: Session, reader: int, writer: Any, progress: mmap.mmap) -> None:
    """A chain copy: answer ``("batch", ops)`` until ``("end",)``, EOF or a failing op."""
    started = 0
    while True:
        message = read_message(reader)
        if message is None or message[0] != "batch":
            return
        raws: list[RawResult] = []
        for op in message[1]:
            started += 1
            PROGRESS.pack_into(progress, 0, started)
            try:
                raws.append(execute(session, op))
            except Exception as exc:  # a bug of ours or a bad op: report, then stop serving
                writer.write(encode(("error", started - 1, f"{type(exc).__name__}: {exc}")))
                writer.flush()
                return
        writer.write(encode(("ok", raws)))
        writer.flush()


def run_case(session: Session, ops: Sequence[Op], writer: Any, progress: mmap.mmap) -> None:
    """A case copy: run ``ops``, answer once."""
    raws: list[RawResult] = []
    for index, op in enumerate(ops):
        PROGRESS.pack_into(progress, 0, index + 1)
        try:
            raws.append(execute(session, op))
        except Exception as exc:  # a bug of ours or a bad op
            writer.write(encode(("error", index, f"{type(exc).__name__}: {exc}")))
            break
    else:
        writer.write(encode(("ok", raws)))
    writer.flush()


def in_copy(progress: mmap.mmap, writer: Any, body: Callable[[], None], *,
            collect: bool = True) -> None:
    """Run ``body`` in a forked copy of this process, then report how the copy ended.

    The copy starts from this process's libbpf state (as loaded: nothing
    registered, ids from 1), writes its own replies and exits; this process
    then sends ``("case-exit", code)`` with ``code`` as
    ``os.waitstatus_to_exitcode`` gives it (negative: killed by that signal).
    ``collect=False`` turns the cyclic garbage collector off in the copy (a
    short case creates no garbage worth the pages a collection would copy).
    """
    PROGRESS.pack_into(progress, 0, 0)
    gc.freeze()  # keep the collector from touching (and so copying) this process's objects
    pid = os.fork()
    if pid == 0:  # the copy: never returns
        if not collect:
            gc.disable()
        code = 0
        try:
            PROGRESS.pack_into(progress, CASE_PID_OFFSET, os.getpid())
            body()
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    PROGRESS.pack_into(progress, CASE_PID_OFFSET, 0)
    writer.write(encode(("case-exit", os.waitstatus_to_exitcode(status))))
    writer.flush()


# ---------------------------------------------------------------------------
# sanitizer and crash reports

_ASAN_ERROR = re.compile(r"ERROR: AddressSanitizer: (?:attempting )?([\w-]+)(.*)")
_UBSAN_SUMMARY = re.compile(r"SUMMARY: UndefinedBehaviorSanitizer: ([\w-]+)")
_RUNTIME_ERROR = re.compile(r"\S+: runtime error: .*")
_FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ +(?:in (\S+)(?: (\S+))?|\((\S+)\))", re.MULTILINE)


def sanitizer_kind(text: str) -> tuple[str | None, str | None]:
    """``(kind, first report line)`` of the first ASan or UBSan report in ``text``."""
    asan = _ASAN_ERROR.search(text)
    if asan:
        return asan.group(1), asan.group(0).strip()
    runtime = _RUNTIME_ERROR.search(text)
    ubsan = _UBSAN_SUMMARY.search(text)
    if ubsan or runtime:
        kind = ubsan.group(1) if ubsan else "undefined-behavior"
        return kind, runtime.group(0).strip() if runtime else None
    return None, None


def stack_frames(text: str, limit: int = MAX_FRAMES) -> tuple[str, ...]:
    """The first stack trace in ``text`` as ``"func file:line:col"`` strings."""
    frames: list[str] = []
    for match in _FRAME.finditer(text):
        if match.group(1) == "0" and frames:
            break
        func, where, module = match.group(2), match.group(3), match.group(4)
        if func and where and where.startswith("("):
            frames.append(f"{func} ({os.path.basename(where.strip('()'))})")
        elif func:
            frames.append(f"{func} {os.path.basename(where)}" if where else func)
        else:
            frames.append(f"? ({os.path.basename(module)})")
        if len(frames) == limit:
            break
    return tuple(frames)


def last_line(text: str) -> str | None:
    """The last non-empty line of ``text`` (glibc's abort message, if any)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def classify(
    returncode: int | None, hung: bool, stderr: str
) -> tuple[CrashKind, int | None, int | None, str | None, str | None]:
    """``(kind, signal, exit_code, sanitizer, message)`` of a dead child."""
    sanitizer, message = sanitizer_kind(stderr)
    sig = -returncode if returncode is not None and returncode < 0 else None
    code = returncode if returncode is not None and returncode >= 0 else None
    if hung:
        return "hang", sig, code, sanitizer, message
    if sanitizer is None:
        message = last_line(stderr)
    kind: CrashKind = "crash" if sig is not None or sanitizer is not None else "exit"
    return kind, sig, code, sanitizer, message


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
                    "oracle.libbpf.worker",
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
        self.status: _Status | None = None if expected else "ok"

    def step(self, wait: float) -> _Status | None:
        """Take the replies that are in, write and read what the pipes take (waiting at
        most ``wait`` s); the final status once the exchange is over, else None."""
        if self.status is not None:
            return self.status
        child = self.child
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
        self.ops = ops
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

        def on_reply(message: Any) -> bool:
            ended.append(message)
            return bool(message[0] != "case-exit")

        status = self._child.exchange([encode(("end",))], 1, REAP_TIMEOUT, on_reply)
        if status != "ok" or not ended or ended[-1][0] != "case-exit":
            self._stop()

    def _settle(self) -> None:
        """Let a flight whose result nobody took land (its answers are dropped)."""
        if self._flight is not None:
            self._flight.result()

    def _stop(self) -> None:
        """Stop the pristine child (and any copy); the next ``run`` starts a new one."""
        self._flight = None
        if self._child is not None:
            child, self._child = self._child, None
            child.reap(kill=False, quit_first=True)

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

        def on_reply(message: Any) -> bool:
            replies.append(message)
            return bool(message[0] != "case-exit")

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


if __name__ == "__main__":
    try:
        sys.exit(child_main(sys.argv[1:]))
    except BrokenPipeError:  # the parent went away: nothing to report to
        os._exit(0)
