"""One op sequence per entry of docs/divergences.md, with libbpf's answers.

Each case is ``(id, ops, answers)``: the ops run on a fresh process (a fresh
``Oracle`` or a fresh libbpf worker) and must give exactly these answers. The
unit tests run them on the oracle for every release; the differential tests
run the same data on real libbpf.

Where the model follows the spec rather than libbpf (the registry changing
under an open object, D13 and D14), ``MODEL_ANSWERS[id]`` holds the oracle's
answers; ``answers`` stay libbpf's.  Where a release's behaviour profile
changes libbpf's answers (D7 on 0.8.x), ``PROFILE_ANSWERS[id, behaviour]``
holds them; ``expected`` picks the answers for one release.  ``CASES`` holds
every documented id in order; ``LIFECYCLE_CASES`` are those of them with
object lifecycle ops (they need bpf() for Load and Attach on real libbpf).
"""

from __future__ import annotations

import errno
from typing import Final

from oracle.bpfelf import ObjectSpec, Program
from oracle.model.versions import Profile
from oracle.ops import (
    Answer,
    Attach,
    AttachTypeByName,
    Callback,
    CallbackCall,
    HandleRef,
    HandlerOpts,
    LifecycleOp,
    Load,
    ObjRef,
    Op,
    Open,
    ProgTypeByName,
    Register,
    Unregister,
)

KPROBE: Final = 2  # BPF_PROG_TYPE_KPROBE, the same in every release
CGROUP_SOCK_ADDR: Final = 18
CONNECT4: Final = 10  # BPF_CGROUP_INET4_CONNECT
PERF_EVENT: Final = 7
U32_MAX: Final = 2**32 - 1
ESRCH = Answer(-errno.ESRCH, (None, None))
EINVAL_1 = Answer(-errno.EINVAL, (None,))
SOCKET_FILTER = 1
ONE_PROG = ObjectSpec((Program(b"unclaimed"),))


def _fallback(prog_type: int, cookie: int) -> Register:
    """A fallback handler with prepare and attach callbacks (both return 0)."""
    return Register(None, prog_type, 0, HandlerOpts(cookie=cookie,
                                                    prog_prepare_load_fn=Callback(0),
                                                    prog_attach_fn=Callback(0)))


def _calls(registration: int, cookie: int) -> tuple[Answer, Answer]:
    """The Load and Attach answers when ``registration``'s callbacks run on prog0."""
    def call(kind: str) -> tuple[CallbackCall, ...]:
        return (CallbackCall(kind, registration, b"prog0", b"unclaimed", cookie, 0),)
    return (Answer(0, (), call("prog_prepare_load_fn")),
            Answer(-errno.EOPNOTSUPP, (), call("prog_attach_fn")))


D13_OPS: Final[list[Op]] = [_fallback(SOCKET_FILTER, 10), Open(ONE_PROG), Unregister(HandleRef(0)),
                            Load(ObjRef(0)), Attach(ObjRef(0), 0)]
D14_OPS: Final[list[Op]] = [*D13_OPS[:3], _fallback(2, 99), Load(ObjRef(0)), Attach(ObjRef(0), 0)]

CASES: Final[list[tuple[str, list[Op], list[Answer]]]] = [
    ("D1", [Register(b"a", 0, 0), Unregister(0)], [Answer(1), Answer(-errno.EINVAL)]),
    (
        "D2",
        [Register(b"abc", KPROBE, 0), ProgTypeByName(b"abc/whatever"),
         Register(b"abc+", 1, 0), ProgTypeByName(b"abc/whatever")],
        [Answer(1), ESRCH, Answer(2), Answer(0, (1, 0))],
    ),
    (
        "D3",
        [Register(b"abc/", KPROBE, 0), Register(b"xyz+", 1, 0),
         ProgTypeByName(b"abc/"), ProgTypeByName(b"xyz/")],
        [Answer(1), Answer(2), Answer(0, (KPROBE, 0)), Answer(0, (1, 0))],
    ),
    (
        "D4",
        [Register(b"abc/", KPROBE, 0, HandlerOpts(prog_setup_fn=Callback(-1))),
         ProgTypeByName(b"abc/anything at all")],
        [Answer(1), Answer(0, (KPROBE, 0))],
    ),
    (
        "D5",
        [Register(None, 9, 3), ProgTypeByName(b"no_such_section"), ProgTypeByName(b""),
         ProgTypeByName(None)],
        [Answer(1), Answer(0, (9, 3)), Answer(0, (9, 3)), Answer(-errno.EINVAL, (None, None))],
    ),
    (
        "D6",
        [AttachTypeByName(b"cgroup/connect4"), Register(b"cgroup/connect4", CGROUP_SOCK_ADDR,
                                                        CONNECT4),
         AttachTypeByName(b"cgroup/connect4"), Register(None, 0, CONNECT4),
         AttachTypeByName(b"unknown")],
        [Answer(0, (CONNECT4,)), Answer(1), EINVAL_1, Answer(2), EINVAL_1],
    ),
    (
        "D7",
        [ProgTypeByName(b"perf_event"), ProgTypeByName(b"perf_event/LLC-load-misses")],
        [Answer(0, (PERF_EVENT, 0)), ESRCH],
    ),
    (
        "D8",
        [Register(b"a+/", 1, 0), Register(b"a/+", 2, 0), ProgTypeByName(b"a+/x"),
         ProgTypeByName(b"a/"), ProgTypeByName(b"a//x"), ProgTypeByName(b"a/x")],
        [Answer(1), Answer(2), Answer(0, (1, 0)), Answer(0, (2, 0)), Answer(0, (2, 0)), ESRCH],
    ),
    ("D9", [ProgTypeByName(b"?socket"), ProgTypeByName(b"socket")],
     [ESRCH, Answer(0, (1, 0))]),
    (
        "D10",
        [Register(b"abc", U32_MAX, U32_MAX), ProgTypeByName(b"abc")],
        [Answer(1), Answer(0, (U32_MAX, U32_MAX))],
    ),
    (
        "D11",
        [Register(b"a", 1, 0, HandlerOpts(sz=7)),
         Register(b"a", 1, 0, HandlerOpts(sz=48, tail=b"\0" * 7 + b"\1")),
         Register(b"a", 1, 0, HandlerOpts(sz=2**64 - 1, tail=b"\1" * 8)),
         Register(b"b", 1, 0, HandlerOpts(sz=12, cookie=5)),
         Register(b"c", 1, 0, HandlerOpts(sz=40, tail=b"\xff" * 16))],
        [Answer(-errno.EINVAL), Answer(-errno.EINVAL), Answer(1), Answer(2), Answer(3)],
    ),
    (
        "D12",
        [Register(b"a", 0, 0), Unregister(-5), Unregister(HandleRef(0)), Unregister(HandleRef(0)),
         Unregister(1000)],
        [Answer(1), Answer(-errno.EINVAL), Answer(0), Answer(-errno.ENOENT),
         Answer(-errno.ENOENT)],
    ),
    (
        "D13",
        D13_OPS,
        [Answer(1), Answer(0, (1,)), Answer(0), Answer(0), Answer(-errno.EOPNOTSUPP)],
    ),
    (
        "D14",
        D14_OPS,
        [Answer(1), Answer(0, (1,)), Answer(0), Answer(2), *_calls(1, 99)],
    ),
]

#: the cases of ``CASES`` with object lifecycle ops (Open .. Close)
LIFECYCLE_CASES: Final[list[tuple[str, list[Op], list[Answer]]]] = [
    case for case in CASES if any(isinstance(op, LifecycleOp) for op in case[1])
]

#: the oracle's answers where it follows the spec, not libbpf (see module docs)
MODEL_ANSWERS: Final[dict[str, list[Answer]]] = {
    "D13": [Answer(1), Answer(0, (1,)), Answer(0), *_calls(0, 10)],
    "D14": [Answer(1), Answer(0, (1,)), Answer(0), Answer(2), *_calls(0, 10)],
}

#: libbpf's answers on a release whose profile has the behaviour (see module docs)
PROFILE_ANSWERS: Final[dict[tuple[str, str], list[Answer]]] = {
    # 0.8.x: SEC_SLOPPY_PFX, so the plain "perf_event" prefix-matches "perf_event/..."
    ("D7", "sloppy_builtin_prefix"): [Answer(0, (PERF_EVENT, 0)), Answer(0, (PERF_EVENT, 0))],
}


def expected(case_id: str, answers: list[Answer], release: Profile) -> list[Answer]:
    """The oracle's answers to case ``case_id`` on ``release``."""
    for (case, behaviour), profiled in PROFILE_ANSWERS.items():
        if case == case_id and getattr(release, behaviour):
            return profiled
    return MODEL_ANSWERS.get(case_id, answers)
