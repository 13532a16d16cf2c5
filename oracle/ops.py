"""The op language: one definition of every call this project makes into libbpf.

Everything that moves between the generators, the oracle, the libbpf worker,
the trace codec, the shrinker and the C reproducer emitter is one of these
frozen dataclasses. Nothing re-encodes a call in its own way.

Rules and invariants:
- Strings that libbpf sees as ``const char *`` are ``bytes`` without NUL, or
  ``None`` for C's NULL (``Name``).  Conversions from ``str`` happen once, in
  ``as_c_string``.
- Enum arguments (``enum bpf_prog_type``, ``enum bpf_attach_type``) are kept as
  the 32-bit unsigned value the C ABI carries (``u32``): libbpf does not
  validate them, so any value is legal.
- ``HandlerOpts`` is ``struct libbpf_prog_handler_opts`` as a caller lays it
  out: ``sz`` at offset 0, ``cookie`` at 8, three callback pointers at 16, 24
  and 32, then ``tail`` (bytes after the 40-byte struct, what a caller with a
  newer header would pass).  Callbacks are ``Callback`` values: what the
  callback returns when libbpf calls it.  Raw bytes from a C caller are parsed
  into this form by ``oracle.model.opts.parse_opts_bytes``.
- ``Unregister`` names its target either as a plain ``int`` or as
  ``HandleRef(n)``: "the value the n-th ``Register`` of this sequence returned"
  (printed ``h<n>``).  Each side resolves it against its own results.
- Answers: every op yields an ``Answer``: ``rc`` is libbpf's return value
  (negative errno on error) and ``out`` the out-parameters in order, ``None``
  for an out-parameter libbpf left untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from oracle.errors import BadArgumentError

INT_MAX: Final = 2**31 - 1
U32_MASK: Final = 2**32 - 1
OPTS_STRUCT_SIZE: Final = 40  # offsetofend(struct libbpf_prog_handler_opts, prog_attach_fn)

Name: TypeAlias = bytes | None


def as_c_string(value: object, what: str) -> Name:
    """Convert a ``str``/``bytes``/``None`` argument to what C's ``const char *`` sees.

    A C string ends at its first NUL, so bytes after an embedded NUL are not
    seen by libbpf and are dropped here.
    """
    if type(value) is bytes and b"\0" not in value:  # the common case, kept fast
        return value
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        nul = raw.find(b"\0")
        return raw if nul < 0 else raw[:nul]
    raise BadArgumentError(f"{what} must be str, bytes or None, not {type(value).__name__}")


def as_u32(value: object, what: str) -> int:
    """An enum argument as the C ABI passes it: a 32-bit value, kept unsigned."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if not -(2**31) <= value <= U32_MASK:
        raise BadArgumentError(f"{what} {value} does not fit a 32-bit C enum")
    return value & U32_MASK


def as_c_int(value: object, what: str) -> int:
    """A C ``int`` argument (handler ids)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if not -(2**31) <= value <= INT_MAX:
        raise BadArgumentError(f"{what} {value} does not fit a C int")
    return value


@dataclass(frozen=True, slots=True)
class Callback:
    """A handler callback; ``ret`` is what it returns when libbpf calls it."""

    ret: int = 0


@dataclass(frozen=True, slots=True)
class HandlerOpts:
    """``struct libbpf_prog_handler_opts`` as the caller lays it out (see module rules)."""

    sz: int = OPTS_STRUCT_SIZE
    cookie: int = 0
    prog_setup_fn: Callback | None = None
    prog_prepare_load_fn: Callback | None = None
    prog_attach_fn: Callback | None = None
    tail: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.sz < 2**64:
            raise BadArgumentError(f"opts.sz {self.sz} does not fit size_t")
        if not -(2**63) <= self.cookie < 2**63:
            raise BadArgumentError(f"opts.cookie {self.cookie} does not fit a C long")
        if self.sz < 2**63 and self.sz > OPTS_STRUCT_SIZE + len(self.tail):
            # libbpf reads sz bytes; a caller that passes fewer has a bug of its own.
            raise BadArgumentError(
                f"opts.sz {self.sz} is larger than the {OPTS_STRUCT_SIZE + len(self.tail)}"
                " bytes passed: libbpf would read past the caller's buffer"
            )

    def to_bytes(self, pointers: tuple[int, int, int] = (0, 0, 0)) -> bytes:
        """The bytes a C caller passes; ``pointers`` are the callbacks' addresses."""
        return struct.pack("<Qq3Q", self.sz, self.cookie, *pointers) + self.tail


@dataclass(frozen=True, slots=True)
class HandleRef:
    """The value returned by the n-th ``Register`` of a sequence (``h<n>``)."""

    index: int

    def __str__(self) -> str:
        return f"h{self.index}"


@dataclass(frozen=True, slots=True)
class Register:
    """``libbpf_register_prog_handler(sec, prog_type, exp_attach_type, opts)``."""

    sec: Name
    prog_type: int
    exp_attach_type: int
    opts: HandlerOpts | None = None


@dataclass(frozen=True, slots=True)
class Unregister:
    """``libbpf_unregister_prog_handler(handler_id)``."""

    handler: HandleRef | int


@dataclass(frozen=True, slots=True)
class ProgTypeByName:
    """``libbpf_prog_type_by_name(name, &prog_type, &expected_attach_type)``."""

    name: Name


@dataclass(frozen=True, slots=True)
class AttachTypeByName:
    """``libbpf_attach_type_by_name(name, &attach_type)``."""

    name: Name


@dataclass(frozen=True, slots=True)
class Fault:
    """Test-only: a deliberately bad call, to prove the worker survives crashes.

    ``kind`` is one of ``FAULT_KINDS``: ``null_out`` calls
    ``libbpf_prog_type_by_name(name, NULL, NULL)`` for a name that resolves (a
    NULL write inside libbpf); ``abort`` calls abort(); ``hang`` sleeps forever.
    Never generated by campaigns and not modelled by the oracle.
    """

    kind: str
    name: Name = b"socket"


FAULT_KINDS: Final = ("null_out", "abort", "hang")

Op: TypeAlias = Register | Unregister | ProgTypeByName | AttachTypeByName | Fault

#: The one name of each op kind, used by traces, reports, signatures and reproducers.
OP_NAMES: Final[dict[type, str]] = {
    Register: "register",
    Unregister: "unregister",
    ProgTypeByName: "prog_type_by_name",
    AttachTypeByName: "attach_type_by_name",
    Fault: "fault",
}

#: Number of out-parameters each op kind reports in its ``Answer``.
OUT_ARITY: Final[dict[type, int]] = {
    Register: 0,
    Unregister: 0,
    ProgTypeByName: 2,
    AttachTypeByName: 1,
    Fault: 0,
}


@dataclass(frozen=True, slots=True)
class CallbackCall:
    """One call of a handler callback by libbpf, as part of an op's answer.

    ``callback`` is ``prog_setup_fn``, ``prog_prepare_load_fn`` or
    ``prog_attach_fn``; ``registration`` is the index of the ``Register`` op
    (the ``HandleRef`` numbering) whose opts carried it; ``ret`` is what the
    callback returned to libbpf.
    """

    callback: str
    registration: int
    program: bytes
    section: bytes
    cookie: int
    ret: int


@dataclass(frozen=True, slots=True)
class Answer:
    """libbpf's answer to one op: return value, out-parameters (None = untouched),
    and the handler callbacks libbpf called during the op, in order."""

    rc: int
    out: tuple[int | None, ...] = field(default=())
    calls: tuple[CallbackCall, ...] = field(default=())


def resolve_handler(op: Unregister, register_results: list[int]) -> int:
    """The C ``int`` an ``Unregister`` passes, given this side's ``Register`` results so far."""
    if isinstance(op.handler, HandleRef):
        if not 0 <= op.handler.index < len(register_results):
            raise BadArgumentError(f"{op.handler} names a registration that has not happened")
        return register_results[op.handler.index]
    return as_c_int(op.handler, "handler_id")
