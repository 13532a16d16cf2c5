"""The wire between the parent (``oracle.libbpf.worker``) and the child (``oracle.libbpf.child``).

Rules and invariants:
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
"""

from __future__ import annotations

import dataclasses
import io
import operator
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any, Final

from oracle.bpfelf import ObjectSpec, Program
from oracle.libbpf.binding import LogLine
from oracle.ops import (
    LIFECYCLE_OPS,
    AttachTypeByName,
    Callback,
    CallbackCall,
    Fault,
    HandleRef,
    HandlerOpts,
    ObjRef,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)

HEADER: Final = struct.Struct("<I")
PICKLE_PROTOCOL: Final = 5
#: ops in a run's first wire message (``split``); later ones grow up to ``cap``
FIRST_CHUNK: Final = 16
READ_SIZE: Final = 64 * 1024  # a pipe's capacity; larger reads make malloc mmap() each time


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
