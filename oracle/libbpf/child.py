"""The child process: one pristine libbpf, and forked copies of it that run the ops.

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
- Progress: before each op the copy stores "ops started since the copy
  began" (int64, little-endian) into a shared 16-byte file mapping, and its
  pid at offset 8; after a death the parent reads the count to name the exact
  op (``CrashEvent.op_index``); a death between ops (decoding, replying) names
  the last op started.
- A copy ends with ``os._exit``; with ``LLVM_PROFILE_FILE`` set (a ``+cov``
  build) through libc's ``exit`` instead, so the profile is written.
- The wire (messages, framing, the child's private fds) follows the rules of
  ``oracle.libbpf.wire``.
"""

from __future__ import annotations

import functools
import gc
import mmap
import os
import signal
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from oracle.errors import BadArgumentError, LibbpfError
from oracle.libbpf import lifecycle
from oracle.libbpf.binding import Libbpf
from oracle.libbpf.results import OpResult, RawResult, to_result
from oracle.libbpf.wire import encode, read_message
from oracle.ops import (
    AttachTypeByName,
    Fault,
    Op,
    OutValue,
    ProgTypeByName,
    Register,
    Unregister,
    resolve_handler,
)
from oracle.stop import die_with_parent

PROGRESS: Final = struct.Struct("<q")
#: the progress file: ops started (offset 0) and the pid running a fresh case (offset 8)
PROGRESS_FILE_SIZE: Final = 16
CASE_PID_OFFSET: Final = 8
HANG_SLEEP: Final = 3600.0


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
    log, calls = lib.log, lib.calls
    if log:
        log.clear()
    if calls:
        calls.clear()
    rc, out = DISPATCH[type(op)](session, op)
    return rc, out, tuple(log) if log else (), tuple(calls) if calls else ()


def run_inprocess(lib: Libbpf | Session, ops: Sequence[Op]) -> list[OpResult]:
    """Run ``ops`` in this process (no crash protection); a ``Libbpf`` gets a fresh Session."""
    session = lib if isinstance(lib, Session) else Session(lib)
    return [to_result(execute(session, op)) for op in ops]


# ---------------------------------------------------------------------------
# the child


def child_main(argv: Sequence[str]) -> int:
    """``python -m oracle.libbpf.child LIBBPF_SO PROGRESS_FILE [--no-log]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    die_with_parent()  # and a parent killed outright takes us with it
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


def _exit_copy(code: int) -> None:
    """End a forked copy; with a ``+cov`` build, through libc's ``exit`` so its profile is written.

    ``os._exit`` skips C ``atexit`` handlers, where the profile runtime linked
    into the .so writes ``$LLVM_PROFILE_FILE`` (``targets.profile_file``,
    ``%m``: merged with the other copies'); its ``__llvm_profile_write_file``
    is hidden by libbpf's version script.
    """
    if os.environ.get("LLVM_PROFILE_FILE"):
        import ctypes

        sys.stdout.flush()
        ctypes.CDLL(None).exit(code)
    os._exit(code)


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
            die_with_parent()  # not inherited across fork
            PROGRESS.pack_into(progress, CASE_PID_OFFSET, os.getpid())
            body()
        except BaseException:
            code = 70
        finally:
            _exit_copy(code)
    _, status = os.waitpid(pid, 0)
    PROGRESS.pack_into(progress, CASE_PID_OFFSET, 0)
    writer.write(encode(("case-exit", os.waitstatus_to_exitcode(status))))
    writer.flush()


if __name__ == "__main__":
    try:
        sys.exit(child_main(sys.argv[1:]))
    except BrokenPipeError:  # the parent went away: nothing to report to
        os._exit(0)
