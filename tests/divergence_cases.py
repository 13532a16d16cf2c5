"""One op sequence per entry of docs/divergences.md, with libbpf's answers.

Each case is ``(id, ops, answers)``: the ops run on a fresh process (a fresh
``Oracle`` or a fresh libbpf worker) and must give exactly these answers. The
unit tests run them on the oracle for every release; the differential tests
run the same data on real libbpf.
"""

from __future__ import annotations

import errno
from typing import Final

from oracle.ops import (
    Answer,
    AttachTypeByName,
    Callback,
    HandleRef,
    HandlerOpts,
    Op,
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
]
