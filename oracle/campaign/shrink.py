"""Shrinking a failing case to a minimal one with the same signature.

Rules:
- A candidate is accepted only if it fails with exactly the same signature as
  the original (``Failing`` returns the signature, or None when it passes).
- Whole calls go first, with the calls that depend on them: removing the k-th
  ``Register`` also removes every ``Unregister(HandleRef(k))`` and renumbers the
  later ``HandleRef`` s, and removing the k-th ``Open`` removes every op on
  ``ObjRef(k)`` and renumbers the later ``ObjRef`` s, so every candidate is a
  well-formed case (``drop_ops``).  Chunks are tried from large to single ops (ddmin style).
- Then arguments are simplified op by op (``simpler_ops``): strings get
  shorter, opts become NULL or standard, numbers become 0, until nothing
  simpler still fails.
- Shrinking is bounded by ``max_tries`` evaluations; the best case so far is
  always a valid, failing case.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

from oracle.ops import (
    AttachTypeByName,
    HandleRef,
    HandlerOpts,
    ObjectOp,
    ObjRef,
    Op,
    Open,
    ProgTypeByName,
    Register,
    Unregister,
)

Failing = Callable[[list[Op]], str | None]


def drop_ops(ops: Sequence[Op], drop: set[int]) -> list[Op]:
    """``ops`` without the indices in ``drop``, without unregisters of dropped registers
    and without object ops on dropped ``Open`` s (``ObjRef`` s renumbered likewise)."""
    kept: list[Op] = []
    new_ref: dict[int, int] = {}
    new_obj: dict[int, int] = {}
    reg_index = obj_index = 0
    for i, op in enumerate(ops):
        if isinstance(op, Register):
            if i not in drop:
                new_ref[reg_index] = len(new_ref)
            reg_index += 1
        elif isinstance(op, Open):
            if i not in drop:
                new_obj[obj_index] = len(new_obj)
            obj_index += 1
        if i in drop:
            continue
        if isinstance(op, Unregister) and isinstance(op.handler, HandleRef):
            if op.handler.index not in new_ref:
                continue  # depends on a dropped registration
            op = Unregister(HandleRef(new_ref[op.handler.index]))
        elif isinstance(op, ObjectOp):
            if op.obj.index not in new_obj:
                continue  # depends on a dropped Open
            op = dataclasses.replace(op, obj=ObjRef(new_obj[op.obj.index]))
        kept.append(op)
    return kept


def shorter_bytes(value: bytes) -> Iterator[bytes]:
    """Simpler strings: empty, halves, one byte less at either end."""
    if not value:
        return
    yield b""
    if len(value) > 2:
        yield value[: len(value) // 2]
        yield value[len(value) // 2 :]
    yield value[:-1]
    yield value[1:]


def simpler_opts(opts: HandlerOpts | None) -> Iterator[HandlerOpts | None]:
    if opts is None:
        return
    yield None
    if opts != HandlerOpts():
        yield HandlerOpts()
    if opts.tail and opts.sz <= 40:
        yield dataclasses.replace(opts, tail=b"")
    if opts.prog_setup_fn is not None:
        yield dataclasses.replace(opts, prog_setup_fn=None)
    if opts.prog_prepare_load_fn is not None:
        yield dataclasses.replace(opts, prog_prepare_load_fn=None)
    if opts.prog_attach_fn is not None:
        yield dataclasses.replace(opts, prog_attach_fn=None)
    if opts.cookie:
        yield dataclasses.replace(opts, cookie=0)


def simpler_op(op: Op) -> Iterator[Op]:
    """Each simplification of one op's arguments, simplest first."""
    if isinstance(op, Register):
        if op.sec is not None:
            for sec in shorter_bytes(op.sec):
                yield dataclasses.replace(op, sec=sec)
        for opts in simpler_opts(op.opts):
            yield dataclasses.replace(op, opts=opts)
        if op.prog_type:
            yield dataclasses.replace(op, prog_type=0)
        if op.exp_attach_type:
            yield dataclasses.replace(op, exp_attach_type=0)
    elif isinstance(op, ProgTypeByName | AttachTypeByName):
        if op.name is not None:
            for name in shorter_bytes(op.name):
                yield dataclasses.replace(op, name=name)
    elif isinstance(op, Unregister) and isinstance(op.handler, int) and op.handler not in (0, 1):
        yield Unregister(1)
        yield Unregister(0)


def shrink(
    ops: Sequence[Op], signature: str, failing: Failing, *, max_tries: int = 2000,
    max_seconds: float | None = None,
) -> list[Op]:
    """The smallest case found that still fails with ``signature``, within ``max_tries``
    candidates and (if given) ``max_seconds``: a long chain's candidates are slow."""
    best = list(ops)
    tries = 0
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def accept(candidate: list[Op]) -> bool:
        nonlocal tries
        tries += 1
        if deadline is not None and time.monotonic() > deadline:
            tries = max_tries  # out of time: every loop stops at its next check
            return False
        return failing(candidate) == signature

    chunk = max(1, len(best) // 2)
    while chunk >= 1 and tries < max_tries:
        start, progressed = 0, False
        while start < len(best) and tries < max_tries:
            candidate = drop_ops(best, set(range(start, start + chunk)))
            if candidate != best and accept(candidate):
                best, progressed = candidate, True
            else:
                start += chunk
        if not progressed:
            chunk //= 2
    changed = True
    while changed and tries < max_tries:
        changed = False
        for i in range(len(best)):
            for simpler in simpler_op(best[i]):
                if tries >= max_tries:
                    break
                candidate = [*best[:i], simpler, *best[i + 1 :]]
                if accept(candidate):
                    best, changed = candidate, True
                    break
    return best
