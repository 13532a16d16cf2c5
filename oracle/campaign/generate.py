"""The fast case generator for time-boxed campaigns.

A case is a short list of ops (``oracle.ops``) run on a fresh libbpf process.
The generator aims at the edges of the model, not at volume:

- names and patterns are built from the release's built-in stems, from the
  patterns registered earlier in the case, and from separators and suffixes
  (``/``, ``+``, ``.s``, ``?``), truncated or extended by a byte, case-flipped,
  empty, one byte, long (repeated, at most ``LONG_NAME`` bytes), or arbitrary
  non-NUL bytes;
- ``sec`` takes all three forms and NULL (the fallback), with duplicates of
  earlier patterns;
- opts are None, standard, or with an interesting ``sz`` (0..7, each field
  boundary, 40, 41, 48, 4096, 2**63+40, 2**64-1) and zero or non-zero tails;
- a fifth of registrations repeat an earlier pattern exactly (duplicates);
- unregisters name earlier registrations (``HandleRef``, biased to early ones
  so removals from the middle of the list are common), the fallback, or
  arbitrary ints (0, negative, far too large), interleaved with lookups.

Invariants: every generated op is valid for ``HandlerOpts`` (its buffer holds
what libbpf reads, ``oracle.ops.zero_check_len``); the generator is deterministic for a
seed; ``HandleRef(n)`` only names a ``Register`` that comes earlier in the case.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, TypeVar

from oracle.model.versions import Profile
from oracle.ops import (
    AttachTypeByName,
    Callback,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
    zero_check_len,
)

T = TypeVar("T")

SUFFIXES: Final = (b"", b"/", b"+", b"/x", b"/a/b", b".s", b".s/x", b"//", b"/+", b"+/", b"x",
                   b"/LLC-load-misses", b"/do_sys_open", b".multi", b".w", b"?")
#: the longest name or pattern a repeat makes (longer ones exercise nothing new)
LONG_NAME: Final = 4096
SZ_CHOICES: Final = (0, 1, 7, 8, 12, 15, 16, 17, 23, 24, 31, 32, 39, 40, 41, 48, 64, 4096,
                     2**63 + 40, 2**64 - 1)
WEIRD_INTS: Final = (0, -1, -(2**31), 2**31 - 1, 1000)
ENUM_EDGES: Final = (0, 1, 2, 31, 32, 2**31 - 1, 2**31, 2**32 - 1)


class CaseGenerator:
    """Deterministic random cases for one release (see module rules)."""

    def __init__(self, release: Profile, seed: int, *, allow_empty_sec: bool = True) -> None:
        self.rng = random.Random(seed)
        self.allow_empty_sec = allow_empty_sec
        defs = release.table.section_defs
        self.stems: tuple[bytes, ...] = tuple(sorted({d.sec.rstrip(b"+/") for d in defs}))
        self.patterns: tuple[bytes, ...] = tuple(d.sec for d in defs)
        self.prog_types = tuple(sorted(set(release.table.prog_types.values())))
        self.attach_types = tuple(sorted(set(release.table.attach_types.values())))

    # -- strings ----------------------------------------------------------------

    def _base(self, seen: Sequence[bytes]) -> bytes:
        rng = self.rng
        roll = rng.random()
        if seen and roll < 0.45:
            return pick(rng, seen)
        if roll < 0.8:
            return pick(rng, self.stems)
        if roll < 0.9:
            return pick(rng, self.patterns)
        return bytes(pick(rng, b"ab/+.?xs") for _ in range(rng.randint(0, 4)))

    def mutate(self, text: bytes) -> bytes:
        """One of the edits campaigns need: affixes, truncation, extension, case, bytes."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return text.rstrip(b"+/") + pick(rng, SUFFIXES)
        if roll < 0.45 and text:
            return text[: rng.randrange(len(text))]
        if roll < 0.55:
            return text + bytes([pick(rng, b"/+.ax")])
        if roll < 0.6:
            return text.swapcase()
        if roll < 0.65:
            return b"?" + text
        if roll < 0.68:  # capped: repeating a repeat would grow without bound
            return (text * rng.randint(2, 40))[:LONG_NAME]
        if roll < 0.72:
            return bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 8)))
        return text

    def name(self, seen: Sequence[bytes]) -> bytes:
        return self.mutate(self._base(seen))

    def sec(self, seen: Sequence[bytes]) -> bytes | None:
        rng = self.rng
        if rng.random() < 0.1:
            return None
        pattern = self.mutate(self._base(seen))
        if not pattern and not self.allow_empty_sec:
            return b"e"
        return pattern

    # -- numbers and opts ---------------------------------------------------------

    def enum(self, values: Sequence[int]) -> int:
        return pick(self.rng, values) if self.rng.random() < 0.85 else pick(self.rng, ENUM_EDGES)

    def opts(self) -> HandlerOpts | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return None
        callbacks = [Callback(pick(rng, (0, 0, -1, 1))) if rng.random() < 0.5 else None
                     for _ in range(3)]
        cookie = pick(rng, (0, 1, -1, 2**63 - 1, -(2**63), rng.getrandbits(32)))
        if roll < 0.7:
            return HandlerOpts(cookie=cookie, prog_setup_fn=callbacks[0],
                               prog_prepare_load_fn=callbacks[1], prog_attach_fn=callbacks[2])
        sz = pick(rng, SZ_CHOICES)
        tail_len = zero_check_len(sz) or pick(rng, (0, 8))
        tail_len += pick(rng, (0, 0, 8))  # bytes beyond sz, never read
        tail = bytearray(tail_len)
        if tail and rng.random() < 0.4:
            tail[rng.randrange(tail_len)] = rng.randint(1, 255)
        return HandlerOpts(sz=sz, cookie=cookie, prog_setup_fn=callbacks[0],
                           prog_prepare_load_fn=callbacks[1], prog_attach_fn=callbacks[2],
                           tail=bytes(tail))

    # -- cases --------------------------------------------------------------------

    def case(self, max_ops: int = 24) -> list[Op]:
        """One case: registrations, unregisters and lookups, interleaved."""
        rng = self.rng
        ops: list[Op] = []
        seen: list[bytes] = []
        registers = 0
        for _ in range(rng.randint(1, max_ops)):
            roll = rng.random()
            if roll < 0.35:
                # an earlier pattern again (duplicates: the first keeps matching), or a new one
                sec = pick(rng, seen) if seen and rng.random() < 0.2 else self.sec(seen)
                if sec is not None:
                    seen.append(sec)
                ops.append(Register(sec, self.enum(self.prog_types),
                                    self.enum(self.attach_types), self.opts()))
                registers += 1
            elif roll < 0.45:
                target: HandleRef | int
                if registers and rng.random() < 0.85:
                    # early handles often: removal from the middle must keep the order
                    early = min(rng.randrange(registers), rng.randrange(registers))
                    target = HandleRef(early)
                else:
                    target = pick(rng, WEIRD_INTS)
                ops.append(Unregister(target))
            elif roll < 0.8:
                ops.append(ProgTypeByName(None if rng.random() < 0.02 else self.name(seen)))
            else:
                ops.append(AttachTypeByName(None if rng.random() < 0.02 else self.name(seen)))
        return ops


def pick(rng: random.Random, seq: Sequence[T]) -> T:
    """``rng.choice(seq)``, cheaper: generators call it ~50 times a case."""
    return seq[int(rng.random() * len(seq))]
