"""Random object-lifecycle sequences: handlers, lookups, and Open .. Close of bpfelf objects.

A sequence mixes ``Register``/``Unregister``/lookups with ``Open``,
``ProgInfo``, ``SetType``, ``SetAutoload``, ``Load``, ``Attach`` and
``Close`` of objects built with ``oracle.bpfelf``: program sections come from
the registered custom stems (``abc``, ``abc/x``, ``custom+`` ...), plain
built-in sections, '?'-prefixed names and libbpf's special names (``license``,
``version``, ``.maps``, ``.text`` ...); a few opens get malformed bytes (a
truncated object, or no ELF at all: ``objects.not_an_elf_object``).

Rules (what keeps every sequence deterministic on real libbpf and inside the
model, ``oracle.model.objects``):
- The registry changes (registers, unregisters that can succeed) only while no
  object of the sequence is open: libbpf's programs point into the registry,
  so a change under an open object is a stale pointer (docs/known-bugs.md KB3,
  docs/divergences.md D13/D14), not a deterministic answer -- unless asked
  (``under_open``, for fresh cases only): then the model's spec-faithful
  answer is what a build without KB3 gives, and a build with it is recognised
  as KB3.
- Each sequence starts with a ``keep`` handler it never unregisters: 1.1.2
  frees the custom array when its last handler goes and then reuses it
  (known-bugs.md), which would poison every later op of the process.
- Program types are ones the kernel model covers (``KERNEL_LOADS``,
  ``KERNEL_REFUSES``, UNSPEC); built-in sections are ones with plain flags and
  no attach function (their attach would reach the kernel).
- Unregister's odd ids are never positive (0, -1, INT_MIN): sequences are
  concatenated (``rebase``) into one process, where any positive id may exist.
- Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Final

from oracle.bpfelf import ObjectSpec, Program, build_object
from oracle.campaign.generate import pick
from oracle.ops import (
    Attach,
    AttachTypeByName,
    Callback,
    Close,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    ProgTypeByName,
    Register,
    SetAutoload,
    SetType,
    Unregister,
)
from oracle.ops import rebase as rebase_op

CUSTOM_STEMS: Final = (b"abc", b"custom", b"xyz", b"socket", b"tc")
FORMS: Final = (b"", b"/", b"+")
#: built-ins with plain flags and no attach function (types the kernel loads)
PLAIN_BUILTINS: Final = (b"socket", b"tc", b"classifier", b"action", b"xdp", b"perf_event",
                         b"sk_skb", b"sockops", b"lwt_in", b"cgroup/dev", b"sk_msg",
                         b"flow_dissector", b"cgroup/sysctl")
SPECIAL: Final = (b"license", b"version", b"maps", b".maps", b".BTF", b".debug_info", b".text",
                  b".data", b"", b".rel.BTF")
#: program types: UNSPEC, ones the kernel loads, ones it refuses (STRUCT_OPS, SYSCALL, 1000)
PROG_TYPES: Final = (0, 1, 1, 2, 3, 5, 6, 7, 17, 17, 27, 31, 1000)
ATTACH_TYPES: Final = (0, 0, 1, 2, 37)
RETS: Final = (0, 0, 0, 0, -1, 1, -22)
ODD_IDS: Final = (0, -1, -(2**31))


class LifecycleGenerator:
    """Deterministic random lifecycle sequences (see module rules)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # -- pieces ------------------------------------------------------------------

    def callback(self) -> Callback | None:
        return Callback(pick(self.rng, RETS)) if self.rng.random() < 0.6 else None

    def opts(self) -> HandlerOpts | None:
        rng = self.rng
        if rng.random() < 0.15:
            return None
        return HandlerOpts(cookie=pick(rng, (0, 1, 7, -5, 2**40, rng.getrandbits(31))),
                           prog_setup_fn=self.callback(), prog_prepare_load_fn=self.callback(),
                           prog_attach_fn=self.callback())

    def register(self) -> Register:
        rng = self.rng
        sec = None if rng.random() < 0.15 else pick(rng, CUSTOM_STEMS) + pick(rng, FORMS)
        return Register(sec, pick(rng, PROG_TYPES), pick(rng, ATTACH_TYPES), self.opts())

    def section(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            name = pick(rng, CUSTOM_STEMS) + pick(rng, (b"", b"/x", b"/", b"+", b"x"))
        elif roll < 0.65:
            name = pick(rng, PLAIN_BUILTINS)
        elif roll < 0.8:
            name = pick(rng, SPECIAL)
        else:
            name = pick(rng, (b"unknown", b"zzz/1", b"a b", b"\xff"))
        return b"?" + name if rng.random() < 0.15 else name

    def spec(self) -> ObjectSpec:
        rng = self.rng
        sections = [self.section() for _ in range(rng.randint(1, 3))]
        programs = tuple(Program(pick(rng, sections)) for _ in range(rng.randint(0, 4)))
        return ObjectSpec(programs, None if rng.random() < 0.1 else b"GPL")

    def open(self) -> Open:
        spec = self.spec()
        roll = self.rng.random()
        if roll < 0.1:
            return Open(build_object(spec))  # raw bytes, the writer's own
        if roll < 0.13:
            return Open(b"")
        if roll < 0.17:  # malformed: a truncated object, or no ELF at all
            rng, data = self.rng, build_object(spec)
            if roll < 0.16:
                return Open(data[: rng.randrange(1, len(data))])
            return Open(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        return Open(spec)

    def lookup(self) -> Op:
        name = self.section().lstrip(b"?")
        return ProgTypeByName(name) if self.rng.random() < 0.7 else AttachTypeByName(name)

    # -- sequences ------------------------------------------------------------------

    def sequence(self, max_ops: int = 40, *, under_open: bool = False) -> list[Op]:
        """One sequence for a fresh process (see module rules); ``under_open``: the
        registry may also change while objects are open (KB3's cause, on purpose)."""
        rng = self.rng
        ops: list[Op] = [Register(b"keep", 1, 0)]
        registers, opens = 1, 0
        open_now: set[int] = set()
        for _ in range(rng.randint(4, max_ops)):
            roll = rng.random()
            if roll < 0.08:
                ops.append(self.lookup())
            elif (not open_now or (under_open and roll < 0.35)) and roll < 0.55:
                if rng.random() < 0.7 or registers == 1:
                    ops.append(self.register())
                    registers += 1
                else:
                    target = (HandleRef(rng.randrange(1, registers)) if rng.random() < 0.85
                              else pick(rng, ODD_IDS))
                    ops.append(Unregister(target))
            elif not open_now or roll < 0.2:
                ops.append(self.open())
                open_now.add(opens)
                opens += 1
            else:
                ops.append(self.object_op(opens, open_now))
        return ops

    def stale_binding(self) -> list[Op]:
        """KB3's shape on purpose (fresh cases): handlers with distinct cookies and a
        ``prog_prepare_load_fn``, an object whose one program is bound to a later one,
        then the registry changes under it (an earlier or its own handler unregistered,
        or more registered so the array may move), then load, attach and close.  The
        model's answer is the spec's (the program keeps its handler); a build with KB3
        calls another handler's callbacks, or reads freed memory."""
        rng = self.rng
        stems = rng.sample(CUSTOM_STEMS, rng.randint(2, len(CUSTOM_STEMS)))
        ops: list[Op] = [Register(b"keep", 1, 0)]
        for i, stem in enumerate(stems):
            ops.append(Register(stem, pick(rng, (1, 1, 17)), 0, HandlerOpts(
                cookie=10 * (i + 1), prog_setup_fn=self.callback(),
                prog_prepare_load_fn=Callback(0), prog_attach_fn=Callback(pick(rng, (0, -1))))))
        bound = rng.randrange(1, len(stems))  # its handler is HandleRef(bound + 1)
        ops.append(Open(ObjectSpec((Program(stems[bound]),), b"GPL")))
        if rng.random() < 0.7:
            ops.append(Unregister(HandleRef(rng.randint(1, bound + 1))))
        else:
            ops += [self.register() for _ in range(rng.randint(1, 6))]
        ops += [Load(ObjRef(0)), Attach(ObjRef(0), 0), Close(ObjRef(0))]
        return ops

    def object_op(self, opens: int, open_now: set[int]) -> Op:
        """An op on one of the objects opened so far (mostly open ones)."""
        rng = self.rng
        pool = sorted(open_now) if open_now and rng.random() < 0.9 else list(range(opens))
        ref = ObjRef(pick(rng, pool))
        prog = pick(rng, (0, 0, 0, 1, 1, 2, 5))
        roll = rng.random()
        if roll < 0.25:
            return ProgInfo(ref, prog)
        if roll < 0.35:
            return SetType(ref, prog, pick(rng, PROG_TYPES))
        if roll < 0.45:
            return SetAutoload(ref, prog, rng.random() < 0.5)
        if roll < 0.6:
            return Load(ref)
        if roll < 0.8:
            return Attach(ref, prog)
        open_now.discard(ref.index)
        return Close(ref)


def counts(ops: Iterable[Op]) -> tuple[int, int]:
    """``(Registers, Opens)`` in ``ops``: how far a following sequence's refs shift."""
    registers = opens = 0
    for op in ops:
        registers += type(op) is Register
        opens += type(op) is Open
    return registers, opens


def rebase(ops: Sequence[Op], registers: int, opens: int) -> list[Op]:
    """``ops`` as they read after ``registers`` Registers and ``opens`` Opens ran before."""
    return [rebase_op(op, registers, opens) for op in ops]


def concatenated(sequences: Iterable[Sequence[Op]]) -> list[Op]:
    """Several sequences as one, for one process: later refs shifted (``rebase``)."""
    ops: list[Op] = []
    registers = opens = 0
    for seq in sequences:
        ops.extend(rebase(seq, registers, opens))
        more_registers, more_opens = counts(seq)
        registers += more_registers
        opens += more_opens
    return ops
