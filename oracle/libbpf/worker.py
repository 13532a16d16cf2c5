"""Run ops against a real libbpf in a child process that may crash, hang or exit.

Rules and invariants:
- One worker process loads one libbpf ``.so`` (``Libbpf``) and owns libbpf's
  process-global state (handler registry, print callback).  The parent
  (``Worker``) never loads the library; it survives every way the child can
  die and starts a fresh child on the next ``run``.
- ``execute(session, op)`` is the one op-execution function; the child's loop
  and ``run_inprocess`` (benchmarks, tests) both call it.
- ``HandleRef(n)`` in ``Unregister`` means: the value returned by the n-th
  (0-based) ``Register`` executed by this process since it started, counting
  every ``Register`` of every batch, failed ones (negative rc) included.  A
  crash, ``reset()`` or ``close()`` starts a new process and the numbering
  starts again at 0.  ``Worker.run`` refuses (``BadArgumentError``) a batch
  that names a registration that has not happened, before sending anything.
  ``run_inprocess(lib, ops)`` numbers the Registers of ``ops`` alone.
- Wire: each message is a 4-byte little-endian length followed by a pickle.
  Parent -> child: ``("batch", ops)``, ``("quit",)``.  Child -> parent:
  ``("ready", version)``, ``("ok", raw_results)``, ``("error", seq, text)``
  (``seq``: the failing op's 0-based number since the process began).  Ops
  travel as the ``oracle.ops`` dataclasses; a private pickle dispatch table
  (``WIRE_TABLE``, not copyreg's global one) pickles them as ``cls(*fields)``,
  3-4x cheaper than the default slots state and still validated by
  ``__init__``.  The protocol uses the child's stdin/stdout, which the child
  moves to private fds at start; its fd 1 then points at its stderr file so
  that stray output cannot corrupt the protocol.
- Pipelining: ``run`` cuts its ops into several messages (``split``: small
  first and last, up to ``chunk`` ops between) and writes them without
  blocking while it reads and decodes earlier replies, so both processes work
  at once and neither can deadlock the other on a full pipe.  The child
  executes the ops strictly in order either way.
- Progress: before each op the child stores "ops started since the process
  began" (int64, little-endian) into a shared 8-byte file mapping; after a
  death the parent reads it to name the exact op (``CrashEvent.op_index``); a
  death between ops (decoding, replying) names the last op started.
- A hang is "no reply and no progress for ``timeout`` seconds": the deadline is
  pushed back whenever the progress counter moves, so ``timeout`` bounds one op,
  not a batch.  A hung child is SIGKILLed.
- Every death becomes a ``CrashEvent``: ``hang``; ``crash`` when a signal
  killed the child or a sanitizer report is in its stderr; ``exit`` otherwise.
  A batch that dies yields no answers (``BatchResult.results == ()``); the
  prefix ``event.ops[:-1]`` replays deterministically in a fresh worker.
- Fresh cases (``Worker.run_fresh``): the child, kept pristine (it has run no
  batch), forks a copy per case; the copy runs the ops and answers, the child
  reports how the copy ended (``("case-exit", code)``).  A case thus starts
  from libbpf as loaded, at fork cost (~2 ms; ~6 ms with ASan) instead of a
  new process (~85 ms).  The copy's pid sits at offset 8 of the progress file
  so a hung copy can be killed; the copy is reaped by the child.
- Hygiene: a dead or stopped child is always ``wait()``ed and its pipes
  closed; the temp dir with the stderr and progress files is removed by
  ``close()``.  The child exits on EOF, so it cannot outlive a killed parent
  for long.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


def read_message(stream: io.BufferedReader) -> Any:
    """The next message from a blocking stream, or ``None`` at EOF."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


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
    reader = open(os.dup(0), "rb")  # noqa: SIM115 - lives as long as the process
    writer = open(os.dup(1), "wb")  # noqa: SIM115
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


def serve(session: Session, reader: io.BufferedReader, writer: Any, progress: mmap.mmap) -> None:
    """Answer batches until EOF or ``("quit",)``; ``started`` counts ops since the start."""
    started = 0
    while True:
        message = read_message(reader)
        if message is not None and message[0] == "case":
            run_forked_case(session, message[1], writer, progress)
            continue
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


def run_forked_case(
    session: Session, ops: Sequence[Op], writer: Any, progress: mmap.mmap
) -> None:
    """Run ``ops`` in a forked copy of this process, then report how the copy ended.

    The copy starts from this process's libbpf state (for a fresh case: as
    loaded, nothing registered), answers ``("ok", raws)`` itself and exits;
    this process then sends ``("case-exit", code)`` with ``code`` as
    ``os.waitstatus_to_exitcode`` gives it (negative: killed by that signal).
    """
    PROGRESS.pack_into(progress, 0, 0)
    gc.freeze()  # keep the collector from touching (and so copying) the parent's objects
    pid = os.fork()
    if pid == 0:  # the copy: never returns
        gc.disable()
        code = 0
        try:
            PROGRESS.pack_into(progress, CASE_PID_OFFSET, os.getpid())
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
        batches: Sequence[tuple[Op, ...]],
        expected: int,
        timeout: float,
        on_reply: Callable[[Any], bool],
        kind: str = "batch",
    ) -> Literal["ok", "eof", "hang"]:
        """Send ``batches`` while reading ``expected`` replies, each passed to ``on_reply``.

        Writing and reading interleave (the child works on one message while
        the next is queued and earlier replies are decoded here), and neither
        side can block the other on a full pipe.  ``on_reply`` returning False
        stops early.  ``hang`` means ``timeout`` s without a reply or progress;
        progress is checked every ``timeout / HANG_CHECKS`` s.
        """
        pending: list[memoryview] = []
        later = list(reversed(batches))
        last, deadline = self.started(), time.monotonic() + timeout
        while expected:
            message = self._take()
            if message is not None:
                expected -= 1
                if not on_reply(message):
                    return "ok"
                deadline = time.monotonic() + timeout
                continue
            if not pending and later:  # encode one message ahead, not all up front
                pending.append(memoryview(encode((kind, later.pop()))))
            status = self._pump(pending, timeout / HANG_CHECKS)
            if status != "ok":
                return status
            now, started = time.monotonic(), self.started()
            if started != last:
                last, deadline = started, now + timeout
            elif now >= deadline:
                return "hang"
        return "ok"

    def _pump(self, pending: list[memoryview], wait: float) -> Literal["ok", "eof"]:
        """One select(): write what the pipe takes, read what is there."""
        writing = [self.wfd] if pending else []
        readable, writable, _ = select.select([self.rfd], writing, [], wait)
        if writable:
            try:
                written = os.write(self.wfd, pending[-1])
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, ConnectionResetError):
                return "eof"
            pending[-1] = pending[-1][written:]
            if not pending[-1]:
                pending.pop()
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
        if quit_first:
            with contextlib.suppress(OSError):
                os.write(self.wfd, encode(("quit",)))
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


class Worker:
    """The parent side: batches of ops to a child process, restarted after any death."""

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
        self._history: list[Op] = []
        self._registers = 0

    # -- lifecycle -------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running child's pid, if any."""
        return self._child.proc.pid if self._child else None

    def start(self) -> None:
        """Start a child now (``run`` does it on demand)."""
        if self._child is None:
            self._child = _Child(self.target, self._tmpdir, log=self.log)
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
        """Stop the child; the next ``run`` starts a fresh one (empty registry)."""
        if self._child is not None:
            child, self._child = self._child, None
            child.reap(kill=False, quit_first=True)

    def close(self) -> None:
        """Stop the child and remove the worker's temp files."""
        self.reset()
        self._cleanup()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- running ---------------------------------------------------------------

    def run(self, ops: Sequence[Op]) -> BatchResult:
        """Run ``ops`` in order in the child; a death comes back as ``BatchResult.crash``."""
        ops = tuple(ops)
        if not ops:
            return BatchResult()
        self.start()
        check_handle_refs(ops, self._registers)
        child = self._child
        assert child is not None
        base = len(self._history)
        self._history.extend(ops)
        self._registers += sum(1 for op in ops if type(op) is Register)
        messages = split(ops, self.chunk)
        results: list[OpResult] = []
        failure: list[Any] = []

        def on_reply(message: Any) -> bool:
            if message[0] != "ok":
                failure.append(message)
                return False
            results.extend(map(to_result, message[1]))
            return True

        status = child.exchange(messages, len(messages), self.timeout, on_reply)
        if status != "ok":
            return BatchResult(crash=self._died(child, base, hung=status == "hang"))
        if failure:
            self.reset()
            _, seq, text = failure[0]
            raise LibbpfError(f"worker failed on op {seq - base} of the batch: {text}")
        return BatchResult(tuple(results))

    def run_fresh(self, ops: Sequence[Op]) -> BatchResult:
        """Run ``ops`` from libbpf's state at start (nothing registered, ids from 1).

        The child forks a copy per call (about a millisecond instead of a new
        process), so the child itself stays pristine; a child that has run
        ``run`` batches is replaced first.  ``HandleRef`` s number the
        ``Register`` s of ``ops`` alone.  A death of the copy is a
        ``CrashEvent`` whose ``ops`` are those of this call up to the running one.
        """
        ops = tuple(ops)
        if not ops:
            return BatchResult()
        check_handle_refs(ops, 0)
        if self._history:
            self.reset()
        self.start()
        child = self._child
        assert child is not None
        offset = child.stderr_size()
        results: list[OpResult] = []
        failure: list[Any] = []
        exit_code: list[int] = []

        def on_reply(message: Any) -> bool:
            if message[0] == "ok":
                results.extend(map(to_result, message[1]))
                return True
            if message[0] == "case-exit":
                exit_code.append(int(message[1]))
                return False
            failure.append(message)
            return True

        status = child.exchange((ops,), 2, self.timeout, on_reply, kind="case")
        hung = status == "hang"
        if hung:
            pid = child.case_pid()
            if pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            status = child.exchange((), 1, REAP_TIMEOUT, on_reply)
        if status == "eof" or not exit_code:  # the child itself died: start over next time
            self._child = None
            child.reap(kill=True)
            exit_code.append(-signal.SIGKILL if hung else 70)
        if failure:
            _, index, text = failure[0]
            raise LibbpfError(f"worker failed on op {index} of the case: {text}")
        if exit_code[0] == 0 and not hung and len(results) == len(ops):
            return BatchResult(tuple(results))
        stderr = child.stderr_since(offset)
        kind, sig, code, sanitizer, message = classify(exit_code[0], hung, stderr)
        running = min(max(child.started(), 1), len(ops))
        return BatchResult(crash=CrashEvent(
            kind=kind, signal=sig, exit_code=code, sanitizer=sanitizer, message=message,
            frames=stack_frames(stderr), op_index=running - 1, ops=ops[:running],
            stderr_tail=stderr[-4096:],
        ))

    def _died(self, child: _Child, base: int, *, hung: bool) -> CrashEvent:
        self._child = None
        started = child.started()
        returncode = child.reap(kill=True)
        stderr = child.stderr_tail()
        kind, sig, code, sanitizer, message = classify(returncode, hung, stderr)
        running = min(max(started, base + 1), len(self._history))
        return CrashEvent(
            kind=kind,
            signal=sig,
            exit_code=code,
            sanitizer=sanitizer,
            message=message,
            frames=stack_frames(stderr),
            op_index=running - 1 - base,
            ops=tuple(self._history[:running]),
            stderr_tail=stderr[-4096:],
        )


if __name__ == "__main__":
    try:
        sys.exit(child_main(sys.argv[1:]))
    except BrokenPipeError:  # the parent went away: nothing to report to
        os._exit(0)
