"""libbpf's selftest prog_tests/custom_sec_handlers.c, as one op sequence.

The selftest registers ``"abc"`` and ``"abc/"`` (RAW_TRACEPOINT), ``"custom+"``
(TRACEPOINT), a ``"kprobe+"`` override (TRACEPOINT) and a fallback
(SYSCALL), opens progs/test_custom_sec_handlers.c (SEC("abc"),
SEC("abc/whatever"), SEC("custom"), SEC("custom/something"), SEC("kprobe"),
SEC("xyz/blah")), checks each program's type, loads and attaches.

Differences from the C selftest, forced by the harness's callbacks (which
record and return a fixed value, nothing else):
- its ``prog_setup_fn`` turns autoload off for abc1 (cookie ABC1): here an
  explicit ``SetAutoload(abc1, false)`` follows the open;
- its fallback ``prog_prepare_load_fn`` sets BPF_F_SLEEPABLE so the SYSCALL
  program loads: here ``SetType(xyz, SOCKET_FILTER)`` instead (the fallback
  binding survives set_type in every release, so its callbacks still run);
- its ``prog_attach_fn`` creates real links: here no link is made, so
  ``Attach`` answers -EOPNOTSUPP after calling the callback.

The same sequence runs on the oracle and on real libbpf 1.1.2 (system) and
1.7.0, and the answers are compared one by one (callback calls included).
"""

from __future__ import annotations

import errno
from typing import Final

import pytest

from oracle import Oracle
from oracle.bpfelf import ObjectSpec, Program
from oracle.errors import LibbpfError
from oracle.libbpf.lifecycle import bpf_permitted
from oracle.libbpf.targets import resolve
from oracle.libbpf.worker import Worker
from oracle.ops import (
    Answer,
    Attach,
    Callback,
    CallbackCall,
    Close,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    Register,
    SetAutoload,
    SetType,
    Unregister,
)

SOCKET_FILTER, TRACEPOINT, RAW_TRACEPOINT, SYSCALL = 1, 5, 17, 31
COOKIE_ABC1, COOKIE_ABC2, COOKIE_CUSTOM, COOKIE_FALLBACK, COOKIE_KPROBE = 1, 2, 3, 4, 5
OK: Final = Callback(0)
OBJ: Final = ObjRef(0)
PROGRAMS: Final = ((b"abc", b"abc1"), (b"abc/whatever", b"abc2"), (b"custom", b"custom1"),
                   (b"custom/something", b"custom2"), (b"kprobe", b"kprobe1"),
                   (b"xyz/blah", b"xyz"))
SPEC: Final = ObjectSpec(tuple(Program(sec, name) for sec, name in PROGRAMS))


def handlers() -> list[Op]:
    """The five registrations, in the selftest's order (constructor first)."""
    return [
        Register(b"abc", RAW_TRACEPOINT, 0, HandlerOpts(cookie=COOKIE_ABC1, prog_setup_fn=OK,
                                                        prog_prepare_load_fn=OK)),
        Register(b"abc/", RAW_TRACEPOINT, 0, HandlerOpts(cookie=COOKIE_ABC2, prog_setup_fn=OK,
                                                         prog_prepare_load_fn=OK,
                                                         prog_attach_fn=OK)),
        Register(b"custom+", TRACEPOINT, 0, HandlerOpts(cookie=COOKIE_CUSTOM, prog_attach_fn=OK)),
        Register(b"kprobe+", TRACEPOINT, 0, HandlerOpts(cookie=COOKIE_KPROBE, prog_setup_fn=OK,
                                                        prog_prepare_load_fn=OK,
                                                        prog_attach_fn=OK)),
        Register(None, SYSCALL, 0, HandlerOpts(cookie=COOKIE_FALLBACK, prog_setup_fn=OK,
                                               prog_prepare_load_fn=OK, prog_attach_fn=OK)),
    ]


def scenario(*, load: bool) -> list[Op]:
    """Register, open, check types; then (if ``load``) load and attach; close, unregister."""
    ops = [*handlers(), Open(SPEC), *(ProgInfo(OBJ, i) for i in range(len(PROGRAMS))),
           SetAutoload(OBJ, 0, False), SetType(OBJ, 5, SOCKET_FILTER)]
    if load:
        ops += [Load(OBJ), *(Attach(OBJ, i) for i in range(len(PROGRAMS)))]
    return [*ops, Close(OBJ), Unregister(HandleRef(4)), Unregister(HandleRef(3))]


def call(kind: str, reg: int, prog: int, cookie: int) -> CallbackCall:
    section, name = PROGRAMS[prog]
    return CallbackCall(kind, reg, name, section, cookie, 0)


def test_oracle_gives_the_selftests_types_and_calls() -> None:
    """The selftest's ASSERTs, on the model of every release."""
    for version in ("1.1.2", "1.4.6", "1.5.0", "1.7.0"):
        answers = Oracle(version).run(scenario(load=True))
        assert [a.rc for a in answers[:5]] == [1, 2, 3, 4, 5]
        opened = answers[5]
        assert opened.out == (6,)
        assert opened.calls == (call("prog_setup_fn", 0, 0, COOKIE_ABC1),
                                call("prog_setup_fn", 1, 1, COOKIE_ABC2),
                                call("prog_setup_fn", 3, 4, COOKIE_KPROBE),
                                call("prog_setup_fn", 4, 5, COOKIE_FALLBACK))
        types = [a.out[2] for a in answers[6:12]]
        assert types == [RAW_TRACEPOINT, RAW_TRACEPOINT, TRACEPOINT, TRACEPOINT, TRACEPOINT,
                         SYSCALL]
        load = answers[14]
        assert load == Answer(0, (), (call("prog_prepare_load_fn", 1, 1, COOKIE_ABC2),
                                      call("prog_prepare_load_fn", 3, 4, COOKIE_KPROBE),
                                      call("prog_prepare_load_fn", 4, 5, COOKIE_FALLBACK)))
        attaches = answers[15:21]
        assert [a.rc for a in attaches] == [-errno.EOPNOTSUPP] * 6
        assert attaches[0].calls == ()  # "abc" has no prog_attach_fn
        assert attaches[2].calls == (call("prog_attach_fn", 2, 2, COOKIE_CUSTOM),)
        assert answers[-3:] == [Answer(0), Answer(0), Answer(0)]


@pytest.mark.libbpf
@pytest.mark.parametrize("spec", ["system", "1.7.0"])
def test_selftest_scenario_on_real_libbpf(spec: str) -> None:
    """Oracle and real libbpf, answer by answer (load/attach only where bpf() is allowed)."""
    try:
        target = resolve(spec)
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unavailable: {exc}")
    ops = scenario(load=bpf_permitted())
    with Worker(target) as worker:
        result = worker.run(ops)
        version = worker.version
    assert result.crash is None, result.crash
    model_version = {"v1.1": "1.1.2", "v1.7": "1.7.0"}[str(version)]
    expected = Oracle(model_version).run(ops)
    for i, (op, want, got) in enumerate(zip(ops, expected, result.results, strict=True)):
        assert got.answer == want, f"op {i} {op}"
