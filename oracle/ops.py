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
  for an out-parameter libbpf left untouched; an out value is an ``int``, or
  ``bytes`` for a C string a getter returned (``ProgInfo``).
- Each op kind is declared once, in ``OP_SPECS``: its name, its out-parameters'
  names and kinds (``OutField``: libbpf's word for each, ``programs``,
  ``prog_type``, ``autoload``...), whether it has refs and whether it is a
  lifecycle op.  ``OP_NAMES``, ``OUT_NAMES``, ``OUT_ARITY`` and
  ``LIFECYCLE_OPS`` derive from it; findings and reproducers name an
  out-parameter only by its ``OutField.name`` (traces keep ``out`` a list).
- Object lifecycle ops (``Open`` .. ``Close``) name objects with ``ObjRef(n)``
  (printed ``obj<n>``) and programs by index; the harness conventions they
  share are listed above their definitions.
"""

from __future__ import annotations

import dataclasses
import errno
import struct
import typing
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from oracle.bpfelf import ObjectSpec
from oracle.errors import BadArgumentError

INT_MAX: Final = 2**31 - 1
U32_MASK: Final = 2**32 - 1
OPTS_STRUCT_SIZE: Final = 40  # offsetofend(struct libbpf_prog_handler_opts, prog_attach_fn)

Name: TypeAlias = bytes | None
#: one out-parameter of an ``Answer``: an int, the bytes of a C string, or None (untouched)
OutValue: TypeAlias = int | bytes | None


def zero_check_len(sz: int) -> int:
    """How many bytes past the 40-byte struct ``libbpf_validate_opts`` reads for ``sz``.

    libbpf passes ``(ssize_t)user_sz - opts_sz`` as ``libbpf_is_mem_zeroed``'s
    ``ssize_t len``.  ``opts_sz`` is a ``size_t``, so the subtraction happens in
    ``size_t`` and the result is read back as signed: a length is checked only
    when ``(sz - 40) mod 2**64`` is below ``2**63``.  So ``sz < 40`` and
    ``sz >= 2**63 + 40`` read nothing past the struct, while ``sz`` in
    ``[2**63, 2**63 + 39]`` makes libbpf scan about ``2**63`` bytes.
    """
    length = (sz - OPTS_STRUCT_SIZE) % 2**64
    return length if length < 2**63 else 0


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
        if zero_check_len(self.sz) > len(self.tail):
            # libbpf reads that far; a caller that passes fewer bytes has a bug of its own.
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


# ---------------------------------------------------------------------------
# object lifecycle ops (bpf_object__open_mem .. bpf_object__close)
#
# Harness conventions, applied identically by the oracle and the worker
# (neither calls libbpf for them):
# - ``ObjRef(n)`` ("obj<n>") is the object the n-th ``Open`` of the sequence
#   returned (0-based, failed Opens count).  Naming an Open that has not
#   happened yet is a ``BadArgumentError`` (like ``HandleRef``).
# - An op naming an object that is not open (its Open failed, or it was
#   closed) answers ``NO_OBJECT`` (-EBADF) with every out-parameter None.
# - A program index outside ``0 <= prog < number of programs`` (in
#   ``bpf_object__next_program`` order) answers ``NO_PROGRAM`` (-ENOENT),
#   out-parameters None.
# - When the bpf() syscall is not permitted to the process, ``Load`` and
#   ``Attach`` answer ``NO_BPF`` (-ENOSYS) without calling libbpf and without
#   changing any state (the worker probes bpf() once; the oracle is told with
#   ``Oracle(version, bpf=False)``).
# - A callback libbpf calls returns the ``Callback.ret`` of the registering
#   op; the harness's ``prog_attach_fn`` never sets ``*link``.  A link that
#   ``Attach`` does get (a built-in handler) is destroyed right away.


@dataclass(frozen=True, slots=True)
class ObjRef:
    """The object the n-th ``Open`` of a sequence returned (``obj<n>``)."""

    index: int

    def __str__(self) -> str:
        return f"obj{self.index}"


@dataclass(frozen=True, slots=True)
class Open:
    """``bpf_object__open_mem(buf, size, NULL)``: an ``ObjectSpec`` (built with
    ``oracle.bpfelf.build_object``) or raw, possibly malformed, object bytes.

    Answer: rc 0 or -errno; out ``(programs,)``: the number of programs (None on failure);
    calls: the ``prog_setup_fn`` calls.
    """

    obj: ObjectSpec | bytes


@dataclass(frozen=True, slots=True)
class ProgInfo:
    """The ``prog``-th program's getters: out ``(name, section_name, prog_type,
    expected_attach_type, autoload)``, what ``bpf_program__name``,
    ``__section_name``, ``__type``, ``__expected_attach_type`` and ``__autoload``
    (as 0/1) return; rc 0."""

    obj: ObjRef
    prog: int


@dataclass(frozen=True, slots=True)
class SetType:
    """``bpf_program__set_type(prog, prog_type)``."""

    obj: ObjRef
    prog: int
    prog_type: int


@dataclass(frozen=True, slots=True)
class SetAutoload:
    """``bpf_program__set_autoload(prog, autoload)``."""

    obj: ObjRef
    prog: int
    autoload: bool


@dataclass(frozen=True, slots=True)
class Load:
    """``bpf_object__load(obj)``; calls: the ``prog_prepare_load_fn`` calls."""

    obj: ObjRef


@dataclass(frozen=True, slots=True)
class Attach:
    """``bpf_program__attach(prog)``: rc 0 (a link, destroyed at once) or
    ``libbpf_get_error``; calls: the ``prog_attach_fn`` calls."""

    obj: ObjRef
    prog: int


@dataclass(frozen=True, slots=True)
class Close:
    """``bpf_object__close(obj)``: rc 0 (or ``NO_OBJECT``)."""

    obj: ObjRef


NO_OBJECT: Final = -errno.EBADF
NO_PROGRAM: Final = -errno.ENOENT
NO_BPF: Final = -errno.ENOSYS

#: the types (for narrowing) of the lifecycle ops that name an object (``ObjRef``) and of
#: ``LIFECYCLE_OPS``: static, so checked against ``OP_SPECS`` below
ObjectOp: TypeAlias = ProgInfo | SetType | SetAutoload | Load | Attach | Close
LifecycleOp: TypeAlias = Open | ObjectOp
Op: TypeAlias = (
    Register | Unregister | ProgTypeByName | AttachTypeByName | Fault | LifecycleOp
)

#: the kinds of value an out-parameter holds (``OutField.kind``): a number of things,
#: an ``enum bpf_prog_type`` / ``enum bpf_attach_type``, a 0/1 flag, a C string
OutKind: TypeAlias = Literal["count", "prog_type", "attach_type", "flag", "string"]


@dataclass(frozen=True, slots=True)
class OutField:
    """One out-parameter of an op kind's ``Answer.out``: its name (libbpf's own word
    for it: the C parameter or getter) and the kind of value it holds."""

    name: str
    kind: OutKind


@dataclass(frozen=True, slots=True)
class OpSpec:
    """What the project knows about one op kind, declared once (``OP_SPECS``).

    ``name``: its one name (traces, reports, signatures, reproducers); ``out``: its
    answer's out-parameters, in ``Answer.out`` order; ``refs``: it has a
    ``HandleRef``/``ObjRef`` field (what ``rebase`` moves); ``makes``: what later
    ops name it by, ``"h"`` (a handler, ``HandleRef``) or ``"obj"`` (an object,
    ``ObjRef``), the prefix of the ``handle`` its trace records carry;
    ``lifecycle``: an object lifecycle op (``LifecycleOp``); ``calls``: libbpf may
    call handler callbacks during it (``Answer.calls``).
    """

    name: str
    out: tuple[OutField, ...] = ()
    refs: bool = False
    makes: str = ""
    lifecycle: bool = False
    calls: bool = False


_PROG_TYPE: Final = OutField("prog_type", "prog_type")
_EXPECTED_ATTACH_TYPE: Final = OutField("expected_attach_type", "attach_type")

#: The op kinds: every list and map of op kinds below derives from this one table.
OP_SPECS: Final[dict[type, OpSpec]] = {
    Register: OpSpec("register", makes="h"),
    Unregister: OpSpec("unregister", refs=True),
    ProgTypeByName: OpSpec("prog_type_by_name", (_PROG_TYPE, _EXPECTED_ATTACH_TYPE)),
    AttachTypeByName: OpSpec("attach_type_by_name", (OutField("attach_type", "attach_type"),)),
    Fault: OpSpec("fault"),
    Open: OpSpec("open", (OutField("programs", "count"),), makes="obj", lifecycle=True,
                 calls=True),
    # the getters bpf_program__name, __section_name, __type, __expected_attach_type, __autoload
    ProgInfo: OpSpec("prog_info", (OutField("name", "string"), OutField("section_name", "string"),
                                   _PROG_TYPE, _EXPECTED_ATTACH_TYPE,
                                   OutField("autoload", "flag")), refs=True, lifecycle=True),
    SetType: OpSpec("set_type", refs=True, lifecycle=True),
    SetAutoload: OpSpec("set_autoload", refs=True, lifecycle=True),
    Load: OpSpec("load", refs=True, lifecycle=True, calls=True),
    Attach: OpSpec("attach", refs=True, lifecycle=True, calls=True),
    Close: OpSpec("close", refs=True, lifecycle=True),
}

#: The one name of each op kind, used by traces, reports, signatures and reproducers.
OP_NAMES: Final[dict[type, str]] = {cls: spec.name for cls, spec in OP_SPECS.items()}
#: The names of each op kind's out-parameters, in ``Answer.out`` order.
OUT_NAMES: Final[dict[type, tuple[str, ...]]] = {
    cls: tuple(f.name for f in spec.out) for cls, spec in OP_SPECS.items()}
#: Number of out-parameters each op kind reports in its ``Answer``.
OUT_ARITY: Final[dict[type, int]] = {cls: len(spec.out) for cls, spec in OP_SPECS.items()}
#: The object lifecycle op kinds, in ``OP_SPECS`` order (``Open`` .. ``Close``).
LIFECYCLE_OPS: Final[tuple[type, ...]] = tuple(
    cls for cls, spec in OP_SPECS.items() if spec.lifecycle)
#: The op kinds during which libbpf may call handler callbacks.
CALLING_OPS: Final[tuple[type, ...]] = tuple(
    cls for cls, spec in OP_SPECS.items() if spec.calls)
if {cls for cls in LIFECYCLE_OPS if OP_SPECS[cls].refs} != set(typing.get_args(ObjectOp)) \
        or set(LIFECYCLE_OPS) != {Open, *typing.get_args(ObjectOp)}:
    raise AssertionError("ObjectOp/LifecycleOp disagree with OP_SPECS")


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
    out: tuple[OutValue, ...] = field(default=())
    calls: tuple[CallbackCall, ...] = field(default=())


def resolve_handler(op: Unregister, register_results: list[int]) -> int:
    """The C ``int`` an ``Unregister`` passes, given this side's ``Register`` results so far."""
    if isinstance(op.handler, HandleRef):
        if not 0 <= op.handler.index < len(register_results):
            raise BadArgumentError(f"{op.handler} names a registration that has not happened")
        return register_results[op.handler.index]
    return as_c_int(op.handler, "handler_id")


def check_obj_ref(ref: ObjRef, opens: int) -> int:
    """The index an ``ObjRef`` names, given how many ``Open`` s this side has run."""
    if not 0 <= ref.index < opens:
        raise BadArgumentError(f"{ref} names an Open that has not happened")
    return ref.index


def rebase(op: Op, registers: int, objects: int) -> Op:
    """``op`` as it reads after ``registers`` Registers and ``objects`` Opens ran before it.

    Every ``HandleRef``/``ObjRef`` field moves past the earlier ones; used to
    run several sequences back to back in one process.
    """
    kind = type(op)
    if not OP_SPECS[kind].refs or not (registers or objects):
        return op
    if kind is Unregister:
        assert isinstance(op, Unregister)
        handler = op.handler
        return Unregister(HandleRef(handler.index + registers)) if isinstance(
            handler, HandleRef) else op
    assert isinstance(op, ObjectOp)
    return dataclasses.replace(op, obj=ObjRef(op.obj.index + objects))

