"""The libbpf worker against real libbpf builds: answers, logs, crashes, hangs, hygiene.

Real bugs found this way (asserted below exactly as they manifest):
- every release: ``Register(sec=b"")`` then any lookup makes ``sec_def_matches``
  read ``sec[len - 1]`` with ``len == 0``.  Built with ASan + UBSan, UBSan's
  pointer-overflow check fires first (``sec + (size_t)-1``); an ASan-only build
  would report a heap-buffer-overflow READ of size 1 at the same line.
- 1.1.2: unregistering the last handler calls ``realloc(p, 0)``, which frees
  ``p``, but keeps ``custom_sec_defs == p``.  With ASan the next ``Register``
  is a double-free inside realloc.  With glibc (system libbpf) the next
  ``Register`` silently reuses the freed chunk (libbpf's writes clobber the
  tcache key that would have caught it); the heap breaks a few ops later.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.errors import BadArgumentError
from oracle.libbpf.reports import classify, stack_frames
from oracle.libbpf.targets import Target
from oracle.libbpf.wire import split
from oracle.libbpf.worker import REAP_TIMEOUT, CrashEvent, Worker, merge_options
from oracle.ops import (
    Answer,
    AttachTypeByName,
    Fault,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf

BPF_PROG_TYPE_KPROBE = 2
BPF_CGROUP_INET4_CONNECT = 10



@pytest.fixture(params=["system", "1.7.0", "1.7.0+asan"])
def target(request: pytest.FixtureRequest) -> Target:
    return target_or_skip(str(request.param))


@pytest.fixture
def worker(target: Target) -> Iterator[Worker]:
    with Worker(target, timeout=5.0) as w:
        yield w


def answers(worker: Worker, ops: list[Op]) -> list[Answer]:
    result = worker.run(ops)
    assert result.crash is None, result.crash
    return [r.answer for r in result.results]


def crash_of(worker: Worker, ops: list[Op]) -> CrashEvent:
    result = worker.run(ops)
    assert result.crash is not None, result.results
    assert result.results == ()
    return result.crash


# -- answers ------------------------------------------------------------------------


def test_register_ids_start_at_one_and_unregister(worker: Worker) -> None:
    ops: list[Op] = [
        Register(b"abc", BPF_PROG_TYPE_KPROBE, 0),
        Register(b"abd+", BPF_PROG_TYPE_KPROBE, 0),
        Unregister(HandleRef(0)),
        Unregister(HandleRef(0)),
    ]
    assert answers(worker, ops) == [Answer(1), Answer(2), Answer(0), Answer(-errno.ENOENT)]


def test_lookups(worker: Worker) -> None:
    ops: list[Op] = [ProgTypeByName(b"kprobe/foo"), AttachTypeByName(b"cgroup/connect4")]
    assert answers(worker, ops) == [
        Answer(0, (BPF_PROG_TYPE_KPROBE, 0)),
        Answer(0, (BPF_CGROUP_INET4_CONNECT,)),
    ]


def test_unknown_name_outs_untouched_and_log_captured(worker: Worker) -> None:
    (result,) = worker.run([ProgTypeByName(b"nope")]).results
    assert result.answer == Answer(-errno.ESRCH, (None, None))
    assert result.log[0].text == "libbpf: failed to guess program type from ELF section 'nope'"


def test_opts_sz_too_small(worker: Worker) -> None:
    (result,) = worker.run([Register(b"x", 1, 0, HandlerOpts(sz=7))]).results
    assert result.answer == Answer(-errno.EINVAL)
    assert [line.text for line in result.log] == [
        "libbpf: libbpf_prog_handler_opts size (7) is too small"
    ]


def test_handle_refs_count_registers_across_batches(worker: Worker) -> None:
    assert answers(worker, [Register(b"a", 1, 0)]) == [Answer(1)]
    assert answers(worker, [Register(b"b", 1, 0, HandlerOpts(sz=4))]) == [Answer(-errno.EINVAL)]
    assert answers(worker, [Register(b"c", 1, 0), Unregister(HandleRef(2))]) == [
        Answer(2),
        Answer(0),
    ]
    assert answers(worker, [Unregister(HandleRef(1))]) == [Answer(-errno.EINVAL)]  # h1 was -22
    with pytest.raises(BadArgumentError):
        worker.run([Unregister(HandleRef(3))])
    worker.reset()
    with pytest.raises(BadArgumentError):
        worker.run([Unregister(HandleRef(0))])
    assert answers(worker, [Register(b"d", 1, 0), Unregister(HandleRef(0))]) == [
        Answer(1),
        Answer(0),
    ]


def test_big_batch_is_pipelined_in_order(worker: Worker) -> None:
    ops: list[Op] = [Register(b"keep", 1, 0)]
    for i in range(1500):
        ops += [
            Register(b"t%d" % i, 1, 0),
            ProgTypeByName(b"t%d" % i),
            Unregister(HandleRef(i + 1)),
        ]
    got = answers(worker, ops)
    assert len(got) == len(ops)
    assert got[1::3] == [Answer(i + 2) for i in range(1500)]
    assert set(got[2::3]) == {Answer(0, (1, 0))}


def test_reset_forks_a_new_chain_copy_not_a_new_process(worker: Worker) -> None:
    assert answers(worker, [Register(b"a", 1, 0)]) == [Answer(1)]
    pid = worker.pid
    worker.reset()
    assert answers(worker, [Register(b"a", 1, 0), ProgTypeByName(b"a")]) == [
        Answer(1),  # ids from 1 again: the new copy starts from libbpf as loaded
        Answer(0, (1, 0)),
    ]
    assert worker.pid == pid


def test_submit_returns_at_once_and_polls_to_the_same_answers(worker: Worker) -> None:
    ops: list[Op] = [ProgTypeByName(b"xdp"), Register(b"s", 1, 0), ProgTypeByName(b"s/x")] * 400
    expected = answers(worker, ops[:3])
    worker.reset()
    flight = worker.submit(ops)
    with pytest.raises(BadArgumentError, match="in flight"):
        worker.submit(ops)
    for _ in range(50):
        flight.poll()
    result = flight.result()
    assert result.crash is None and len(result.results) == len(ops)
    assert [r.answer for r in result.results[:3]] == expected
    assert flight.result() is result  # taken once, kept


def test_a_landed_flight_is_freed_without_the_garbage_collector(worker: Worker) -> None:
    # a flight and its exchange referred to each other: every batch's answers lived on
    # as cyclic garbage until a full collection, which dominated the campaign's own CPU
    gc.disable()
    try:
        flight = worker.submit([ProgTypeByName(b"xdp")] * 10)
        assert flight.result().crash is None
        ref = weakref.ref(flight)
        del flight
        assert ref() is None
    finally:
        gc.enable()


def test_copy_death_with_batches_still_queued_keeps_the_child(worker: Worker) -> None:
    worker.start()
    pid = worker.pid
    # thousands of ops after the crash: several messages are queued when the copy dies
    event = crash_of(worker, [Fault("null_out"), *[ProgTypeByName(b"xdp")] * 5000])
    assert event.op_index == 0
    # the child skipped what was meant for the dead copy; the next copy answers in step
    assert answers(worker, [ProgTypeByName(b"xdp")] * 3) == [Answer(0, (6, 37))] * 3
    assert worker.pid == pid


def test_split_sizes() -> None:
    ops = tuple(ProgTypeByName(b"x") for _ in range(1000))
    sizes = [len(p) for p in split(ops, 256)]
    assert sum(sizes) == 1000 and sizes[0] == 16 and sizes[-1] == 16 and max(sizes) == 256
    assert [len(p) for p in split(ops[:3], 256)] == [3]


# -- faults -------------------------------------------------------------------------


def test_null_out_fault_is_a_crash_and_the_worker_recovers(target: Target, worker: Worker) -> None:
    before: list[Op] = [Register(b"x", 1, 0), ProgTypeByName(b"kprobe/a")]
    assert answers(worker, before) == [Answer(1), Answer(0, (BPF_PROG_TYPE_KPROBE, 0))]
    first_pid = worker.pid
    event = crash_of(worker, [ProgTypeByName(b"x"), Fault("null_out"), ProgTypeByName(b"y")])
    assert event.kind == "crash"
    assert event.op_index == 1
    assert event.ops == (*before, ProgTypeByName(b"x"), Fault("null_out"))
    if target.variant == "plain":
        assert (event.signal, event.sanitizer, event.frames) == (signal.SIGSEGV, None, ())
    else:  # UBSan's null check fires before the store faults
        assert event.exit_code == 1 and event.sanitizer == "null-pointer-use"
        assert event.frames[0].startswith("libbpf_prog_type_by_name libbpf.c:")
        assert "store to null pointer" in (event.message or "")
    # a fresh copy of the pristine child: empty registry, HandleRefs numbered from 0 again
    assert answers(worker, [Register(b"x", 1, 0), ProgTypeByName(b"x")]) == [
        Answer(1),
        Answer(0, (1, 0)),
    ]
    assert worker.pid == first_pid  # recovered by a fork, not a new process


def test_abort_fault(target: Target, worker: Worker) -> None:
    event = crash_of(worker, [Fault("abort")])
    assert (event.kind, event.op_index) == ("crash", 0)
    if target.variant == "plain":
        assert event.signal == signal.SIGABRT
    else:  # the target's ASAN_OPTIONS has handle_abort=1
        assert event.sanitizer == "ABRT" and "abort" in [f.split()[0] for f in event.frames]


def test_hang_fault_is_caught_by_the_timeout(target: Target) -> None:
    with Worker(target, timeout=1.0) as worker:
        assert answers(worker, [ProgTypeByName(b"xdp")]) == [Answer(0, (6, 37))]
        started = time.monotonic()
        event = crash_of(worker, [ProgTypeByName(b"xdp"), Fault("hang")])
        elapsed = time.monotonic() - started
        assert (event.kind, event.signal, event.op_index) == ("hang", signal.SIGKILL, 1)
        assert 1.0 <= elapsed < 4.0
        assert answers(worker, [ProgTypeByName(b"xdp")]) == [Answer(0, (6, 37))]


def test_a_caller_away_longer_than_the_timeout_is_no_hang(target: Target) -> None:
    # the campaign polls a flight between its own work; a copy that answered (or died)
    # while nobody watched is not hung, however long the caller was away
    with Worker(target, timeout=1.0) as worker:
        flight = worker.submit([ProgTypeByName(b"xdp")] * 3)
        time.sleep(2.5)
        assert [r.answer for r in flight.result().results] == [Answer(0, (6, 37))] * 3
        flight = worker.submit([ProgTypeByName(b"xdp"), Fault("abort")])
        time.sleep(2.5)
        crash = flight.result().crash
        assert crash is not None and (crash.kind, crash.op_index) == ("crash", 1)


def test_hang_with_batches_still_queued_keeps_the_child(target: Target) -> None:
    # the hung copy is killed by pid; what was queued for it (a big message half written
    # included) reaches the child, which skips it, and the next copy answers in step
    with Worker(target, timeout=1.0) as worker:
        worker.start()
        pid = worker.pid
        names = [ProgTypeByName(b"x" * 3000 + b"%d" % i) for i in range(2000)]
        event = crash_of(worker, [Fault("hang"), *names])
        assert (event.kind, event.signal, event.op_index) == ("hang", signal.SIGKILL, 0)
        assert answers(worker, [ProgTypeByName(b"xdp")] * 3) == [Answer(0, (6, 37))] * 3
        assert worker.pid == pid


def test_close_with_a_batch_in_flight_is_prompt(target: Target) -> None:
    worker = Worker(target)
    flight = worker.submit([ProgTypeByName(b"x" * 3000)] * 20000)  # far more than the pipes hold
    flight.poll()
    started = time.monotonic()
    worker.close()  # the copy, blocked on replies nobody reads, is killed, not awaited
    assert time.monotonic() - started < REAP_TIMEOUT / 2  # not the 30 s wait for a quit


@pytest.mark.parametrize("target", ["system", "1.7.0"], indirect=True)  # timing only: plain
def test_slow_batch_with_progress_is_not_a_hang(target: Target) -> None:
    with Worker(target, timeout=0.2) as worker:
        ops: list[Op] = [ProgTypeByName(b"nope%d" % i) for i in range(20000)]  # ~0.5 s of logging
        result = worker.run(ops)
        assert result.crash is None and len(result.results) == len(ops)


# -- real libbpf bugs -----------------------------------------------------------------


@pytest.mark.parametrize("spec", ["1.7.0+asan", "1.1.2+asan"])
def test_empty_sec_reads_before_the_string(spec: str) -> None:
    with Worker(target_or_skip(spec), timeout=30.0) as worker:
        event = crash_of(
            worker, [Register(b"", BPF_PROG_TYPE_KPROBE, 0), ProgTypeByName(b"kprobe/x")]
        )
    assert (event.kind, event.signal, event.exit_code, event.op_index) == ("crash", None, 1, 1)
    # UBSan (pointer-overflow) precedes ASan (heap-buffer-overflow READ of size 1) here.
    assert event.sanitizer in ("pointer-overflow", "heap-buffer-overflow")
    assert event.frames[0].startswith("sec_def_matches libbpf.c:")
    assert event.frames[1].startswith("find_sec_def libbpf.c:")
    assert event.frames[2].startswith("libbpf_prog_type_by_name libbpf.c:")


REGISTER_TO_EMPTY_TWICE: list[Op] = [
    Register(b"a", BPF_PROG_TYPE_KPROBE, 0),
    Unregister(HandleRef(0)),  # count 0: realloc(p, 0) frees p, libbpf keeps p
    Register(b"b", BPF_PROG_TYPE_KPROBE, 0),  # realloc(freed p, ...)
    Unregister(HandleRef(1)),
    Register(b"c", BPF_PROG_TYPE_KPROBE, 0),
    Unregister(HandleRef(2)),
]


def test_112_asan_double_free_after_emptying_the_registry() -> None:
    with Worker(target_or_skip("1.1.2+asan"), timeout=30.0) as worker:
        event = crash_of(worker, REGISTER_TO_EMPTY_TWICE)
    assert (event.kind, event.sanitizer, event.op_index) == ("crash", "double-free", 2)
    assert event.frames[0].startswith("realloc ")
    assert event.frames[1].startswith("libbpf_reallocarray libbpf_internal.h:")
    assert event.frames[2].startswith("libbpf_register_prog_handler libbpf.c:")
    assert event.ops == tuple(REGISTER_TO_EMPTY_TWICE[:3])


def test_112_system_heap_corruption_after_emptying_the_registry() -> None:
    target = target_or_skip("system")
    with Worker(target) as worker:
        worker.start()
        if worker.version != "v1.1":
            pytest.skip(f"system libbpf is {worker.version}, not 1.1")
        event = crash_of(worker, REGISTER_TO_EMPTY_TWICE)
    # glibc notices only later, and where depends on the heap: observed
    # "double free or corruption (fasttop)" (SIGABRT) at op 5 on bookworm.
    assert event.kind == "crash" and event.signal in (signal.SIGABRT, signal.SIGSEGV)
    assert event.op_index >= 2
    if event.signal == signal.SIGABRT:
        assert event.message is not None and any(
            word in event.message for word in ("free", "malloc", "corrupt")
        )


def test_170_fixed_emptying_the_registry() -> None:
    with Worker(target_or_skip("1.7.0")) as worker:
        got = answers(
            worker, [*REGISTER_TO_EMPTY_TWICE, Register(b"d", 1, 0), ProgTypeByName(b"d")]
        )
    ids = [Answer(1), Answer(0), Answer(2), Answer(0), Answer(3), Answer(0), Answer(4)]
    assert got == [*ids, Answer(0, (1, 0))]


# -- report parsing ---------------------------------------------------------------------

ASAN_REPORT = """\
==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000a2f at pc 0x7f
READ of size 1 at 0x602000000a2f thread T0
    #0 0x7f1 in sec_def_matches /cache/src/libbpf.c:10029:6
    #1 0x7f2 in find_sec_def /cache/src/libbpf.c:10060:7
    #2 0x7f3 in ffi_call_unix64 (/venv/_cffi_backend.so+0x29051) (BuildId: ab)
    #3 0x7f4  (/lib/x86_64-linux-gnu/libc.so.6+0x2724a)

0x602000000a2f is located 1 bytes to the left of 1-byte region
allocated by thread T0 here:
    #0 0x7f5 in strdup
"""


def test_parse_asan_report() -> None:
    assert classify(1, False, ASAN_REPORT)[:4] == ("crash", None, 1, "heap-buffer-overflow")
    assert stack_frames(ASAN_REPORT) == (
        "sec_def_matches libbpf.c:10029:6",
        "find_sec_def libbpf.c:10060:7",
        "ffi_call_unix64 (_cffi_backend.so+0x29051)",
        "? (libc.so.6+0x2724a)",
    )


def test_classify_plain_deaths() -> None:
    assert classify(-6, False, "free(): double free detected in tcache 2\n") == (
        "crash",
        6,
        None,
        None,
        "free(): double free detected in tcache 2",
    )
    assert classify(0, False, "")[0] == "exit"
    assert classify(-9, True, "")[0] == "hang"


def test_merge_options_keeps_existing_values() -> None:
    assert merge_options("a=1:b=2", {"b": "9", "c": "3"}) == "a=1:b=2:c=3"
    assert merge_options("", {"c": "3"}) == "c=3"


# -- hygiene ------------------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def children() -> list[str]:
    """Our child processes, with their state (Z = zombie)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                found.append(f"{entry.name}:{fields[0]}")
    return found


def test_crashes_leak_no_fds_and_leave_no_zombies() -> None:
    target = target_or_skip("system")
    fds_before, children_before = open_fds(), children()
    with Worker(target, timeout=1.0) as worker:
        for i in range(10):
            fault = Fault(("null_out", "abort", "hang")[i % 3])
            assert worker.run([ProgTypeByName(b"xdp"), fault]).crash is not None
        assert answers(worker, [ProgTypeByName(b"xdp")]) == [Answer(0, (6, 37))]
    assert children() == children_before
    assert open_fds() == fds_before
