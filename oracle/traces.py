"""Traces: op sequences (with libbpf's answers) as JSON Lines files.

File layout (``format_version`` 1, schema ``oracle/schemas/trace-v1.schema.json``):
- Line 1 is the header object: ``format`` ("libbpf-sec-oracle/trace"),
  ``format_version`` (1), ``libbpf`` (``version``, ``variant``, ``so_sha256``,
  ``path``), ``oracle_version``, ``seed``, ``origin``, ``created`` and an
  optional free-text ``note``.
- Every further line is one record, one call:
  ``{"op": KIND, "args": {...}, "handle": "h<n>", "answer": {"rc": .., "out": [..],
  "calls": [..]}, "log": [..]}``.  ``handle`` is present exactly on
  ``register`` (``"h<n>"``) and ``open`` (``"obj<n>"``) records; ``answer``
  and ``log`` are optional (a trace without answers is a plain op sequence),
  and so is ``calls`` inside an answer (absent: libbpf called no callback).
- Object lifecycle records (``open``, ``prog_info``, ``set_type``,
  ``set_autoload``, ``load``, ``attach``, ``close``) came after version 1's
  first release without a version bump: every older trace still reads.

Encoding rules (each value has exactly one meaning; the writer emits one
canonical form, the reader also accepts the non-canonical alternatives noted):
- Byte strings (``sec``, ``name``, ``opts.tail`` and those below): a JSON
  string when every byte is printable ASCII (0x20..0x7e), else
  ``{"hex": "<lowercase pairs>"}``; ``null`` is C's NULL (only where the op
  allows it).  The reader accepts hex for printable bytes too.
  ``sec``/``name`` never contain a NUL byte.
- ``rc``: an int, or ``"-E<NAME>"`` when it is negative and a known Linux
  errno (``-22`` is written ``"-EINVAL"``; the reader accepts either form and
  every errno alias such as ``"-ENOTSUP"``).
- Enum arguments (``prog_type``, ``exp_attach_type``) are the u32 the C ABI
  carries; so are out-parameters, except byte strings (below); an
  out-parameter libbpf left untouched is ``null``.
- ``Unregister.handler`` is ``"h<n>"`` (``HandleRef(n)``: what the n-th
  ``register`` record returned) or a plain C int.  The n-th register record
  carries ``"handle": "h<n>"`` (0-based, counting every register record).
- ``opts``: ``null`` or an object with all of ``sz``, ``cookie``,
  ``prog_setup_fn``, ``prog_prepare_load_fn``, ``prog_attach_fn`` (each
  ``null`` or ``{"ret": int}``) and ``tail``.
- ``obj`` of an ``open``: an ``ObjectSpec`` as ``{"programs": [{"section":
  bytes, "name": bytes, "insns": bytes}, ..], "license": bytes or null}``, or
  raw object bytes as ``{"hex": ..}`` (always hex, even for ``b""``).  The two
  never share a key set.  ``section``/``name``/``license`` never contain NUL.
- ``obj`` of the other lifecycle ops: ``"obj<n>"`` (``ObjRef(n)``: what the
  n-th ``open`` record opened); the n-th open record carries
  ``"handle": "obj<n>"`` (0-based, counting every open record, failed or not).
  ``prog``: a C int (out of range is the harness's ``NO_PROGRAM``);
  ``autoload``: a JSON boolean.
- Out-parameters are ``null`` (untouched) or per kind: u32 for the lookups
  and ``open`` (the number of programs); ``prog_info``'s are ``[name,
  section, type, expected_attach_type, autoload]``, the first two byte
  strings (as above), the others u32.
- ``calls``: ``[{"callback": "prog_setup_fn" | "prog_prepare_load_fn" |
  "prog_attach_fn", "registration": "h<n>", "program": bytes, "section":
  bytes, "cookie": long, "ret": C int}, ..]`` in call order;
  ``registration`` names the register record whose opts held the callback.
  The writer omits an empty ``calls``; the reader accepts ``[]``.
- Integers may be written as integral JSON numbers (``1.0``), as JSON Schema
  allows; booleans are never integers.

Invariants:
- The op kinds and their argument codecs live in one table, ``OP_KINDS``: an
  entry names the kind, its ``oracle.ops`` dataclass and one codec per field.
  The encoder, the decoder and the JSON Schema are all derived from it, so a
  new op kind is one entry (then regenerate the schema file with
  ``write_schema()``; a test fails until the file matches).
- Every read validates: the header with jsonschema; each record with the hand
  decoder (``check_record``), which accepts exactly the records the schema
  accepts (proved by a property test), then with the checks a schema cannot
  express: handle numbering (``h<n>``, ``obj<n>``), ``h<n>`` (``handler``,
  a call's ``registration``) naming an earlier register record and
  ``obj<n>`` an earlier open record, ``opts.sz`` not larger than the bytes
  given, an ``open``'s spec one ``oracle.bpfelf.build_object`` accepts.
- Every bad input is a ``TraceError`` of one line: ``FILE: line N: what``.
- ``write_trace`` is atomic: a temp file in the same directory, fsynced, then
  renamed over the target; readers never see a partial trace.
- Reading streams (``TraceReader``/``iter_records``); identical lines without
  a handle decode once (a bounded cache), since a decoded ``Record`` is immutable.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib.metadata
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TypeAlias

from oracle.bpfelf import ObjectSpec, Program, build_object
from oracle.errors import OracleError, TraceError
from oracle.ops import (
    FAULT_KINDS,
    INT_MAX,
    OUT_ARITY,
    U32_MASK,
    Answer,
    Attach,
    AttachTypeByName,
    Callback,
    CallbackCall,
    Close,
    Fault,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    OutValue,
    ProgInfo,
    ProgTypeByName,
    Register,
    SetAutoload,
    SetType,
    Unregister,
)

FORMAT: Final = "libbpf-sec-oracle/trace"
FORMAT_VERSION: Final = 1
VARIANTS: Final = ("plain", "asan", "fuzz", "system", "path")
SCHEMA_FILE: Final = "trace-v1.schema.json"
INT_MIN: Final = -(2**31)
SIZE_MAX: Final = 2**64 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1
CACHE_LIMIT: Final = 1 << 16

JSON: TypeAlias = Any  # what json.loads returns


# ---------------------------------------------------------------------------
# data


@dataclass(frozen=True, slots=True)
class LibbpfInfo:
    """Which libbpf a trace's answers come from (or are meant for)."""

    version: str
    variant: str = "plain"  # one of VARIANTS
    so_sha256: str | None = None
    path: str | None = None


def package_version() -> str:
    try:
        return importlib.metadata.version("libbpf-sec-oracle")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """Line 1 of a trace (see module docstring)."""

    libbpf: LibbpfInfo
    origin: str = "hand"
    seed: int | None = None
    oracle_version: str = field(default_factory=package_version)
    created: str = field(default_factory=now_iso)
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One call: the op, libbpf's answer (None: not recorded) and its log lines."""

    op: Op
    answer: Answer | None = None
    log: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    header: TraceHeader
    records: tuple[Record, ...]

    @property
    def ops(self) -> list[Op]:
        return [r.op for r in self.records]


def records_of(ops: Iterable[Op], answers: Iterable[Answer] | None = None) -> list[Record]:
    """Records pairing ``ops`` with ``answers`` (same length), or without answers."""
    ops = list(ops)
    if answers is None:
        return [Record(op) for op in ops]
    return [Record(op, a) for op, a in zip(ops, answers, strict=True)]


# ---------------------------------------------------------------------------
# codec errors (internal; the reader turns them into TraceError with a line)


class _Shape(Exception):
    """A value the schema rejects: ``path`` from the record's root, and why."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, key: str | int) -> _Shape:
        return _Shape(self.message, (key, *self.path))


class _Semantic(Exception):
    """A schema-valid value that breaks a rule the schema cannot express."""


def json_path(path: Sequence[str | int]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _show(value: JSON) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(regex: str) -> str:
    """``regex`` anchored at both ends in ECMA-262 and Python alike.

    (Python's ``$`` also matches before a final newline; ``(?!\\n)`` rules that out.)
    """
    return f"^(?:{regex})$(?!\\n)"


# ---------------------------------------------------------------------------
# value codecs: encode, decode (raises _Shape/_Semantic) and JSON Schema


def _as_int(value: JSON) -> int:
    """A JSON integer (JSON Schema: integral numbers, never booleans) as int."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise _Shape(f"expected an integer, got {_show(value)}")


@dataclass(frozen=True)
class IntCodec:
    lo: int
    hi: int

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}

    def encode(self, value: int) -> JSON:
        return value

    def decode(self, value: JSON) -> int:
        if type(value) is int and self.lo <= value <= self.hi:
            return value
        number = _as_int(value)
        if not self.lo <= number <= self.hi:
            raise _Shape(f"{number} is not in {self.lo}..{self.hi}")
        return number


PRINTABLE_RE: Final = "[ -~]*"
HEX_RE: Final = "(?:[0-9a-f]{2})*"
HEX_NO_NUL_RE: Final = "(?:0[1-9a-f]|[1-9a-f][0-9a-f])*"
_PRINTABLE = re.compile(PRINTABLE_RE + r"\Z")
_PRINTABLE_BYTES = re.compile(PRINTABLE_RE.encode() + rb"\Z")
_HEX = re.compile(HEX_RE + r"\Z")
_HEX_NO_NUL = re.compile(HEX_NO_NUL_RE + r"\Z")


@dataclass(frozen=True)
class BytesCodec:
    """Bytes as a printable string or ``{"hex": ...}``; ``nullable``: None is ``null``."""

    nullable: bool
    nul_ok: bool

    @property
    def schema(self) -> dict[str, Any]:
        hex_re = HEX_RE if self.nul_ok else HEX_NO_NUL_RE
        alternatives: list[dict[str, Any]] = [
            {"type": "string", "pattern": _whole(PRINTABLE_RE)},
            {
                "type": "object",
                "required": ["hex"],
                "additionalProperties": False,
                "properties": {"hex": {"type": "string", "pattern": _whole(hex_re)}},
            },
        ]
        if self.nullable:
            alternatives.insert(0, {"type": "null"})
        return {"anyOf": alternatives}

    def encode(self, value: bytes | None) -> JSON:
        if value is None:
            return None
        if _PRINTABLE_BYTES.match(value):
            return value.decode("ascii")
        return {"hex": value.hex()}

    def decode(self, value: JSON) -> bytes | None:
        if type(value) is str:
            if _PRINTABLE.match(value):
                return value.encode("ascii")
            raise _Shape(f"{_show(value)} is not printable ASCII: write {{\"hex\": ...}}")
        if value is None and self.nullable:
            return None
        if type(value) is dict and value.keys() == {"hex"} and type(value["hex"]) is str:
            pattern = _HEX if self.nul_ok else _HEX_NO_NUL
            if pattern.match(value["hex"]):
                return bytes.fromhex(value["hex"])
            what = "lowercase hex pairs" + ("" if self.nul_ok else " without 00")
            raise _Shape(f"expected {what}, got {_show(value['hex'])}", ("hex",))
        kinds = "null, " if self.nullable else ""
        raise _Shape(f"expected {kinds}a printable string or {{\"hex\": ...}}, got {_show(value)}")


@dataclass(frozen=True)
class EnumCodec:
    values: tuple[str, ...]

    @property
    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}

    def encode(self, value: str) -> JSON:
        return value

    def decode(self, value: JSON) -> str:
        if type(value) is str and value in self.values:
            return value
        raise _Shape(f"expected one of {', '.join(self.values)}, got {_show(value)}")


_HANDLE = re.compile(r"h(0|[1-9][0-9]*)\Z")
HANDLE_SCHEMA: Final = {"type": "string", "pattern": _whole("h(?:0|[1-9][0-9]*)")}


@dataclass(frozen=True)
class HandlerCodec:
    """``Unregister.handler``: ``"h<n>"`` or a C int."""

    @property
    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"$ref": "#/$defs/handle"}, {"$ref": "#/$defs/c_int"}]}

    def encode(self, value: HandleRef | int) -> JSON:
        return str(value) if isinstance(value, HandleRef) else value

    def decode(self, value: JSON) -> HandleRef | int:
        if type(value) is str:
            match = _HANDLE.match(value)
            if match:
                return HandleRef(int(match.group(1)))
            raise _Shape(f"expected \"h<n>\" or an int, got {_show(value)}")
        return int(C_INT.decode(value))


_OBJ_REF = re.compile(r"obj(0|[1-9][0-9]*)\Z")
OBJ_REF_SCHEMA: Final = {"type": "string", "pattern": _whole("obj(?:0|[1-9][0-9]*)")}


@dataclass(frozen=True)
class ObjRefCodec:
    """``ObjRef(n)`` as ``"obj<n>"``."""

    @property
    def schema(self) -> dict[str, Any]:
        return {"$ref": "#/$defs/obj_ref"}

    def encode(self, value: ObjRef) -> JSON:
        return str(value)

    def decode(self, value: JSON) -> ObjRef:
        match = _OBJ_REF.match(value) if type(value) is str else None
        if match is None:
            raise _Shape(f"expected \"obj<n>\", got {_show(value)}")
        return ObjRef(int(match.group(1)))


@dataclass(frozen=True)
class RegistrationCodec:
    """``CallbackCall.registration`` (a register's index) as its handle name ``"h<n>"``."""

    @property
    def schema(self) -> dict[str, Any]:
        return {"$ref": "#/$defs/handle"}

    def encode(self, value: int) -> JSON:
        return f"h{value}"

    def decode(self, value: JSON) -> int:
        match = _HANDLE.match(value) if type(value) is str else None
        if match is None:
            raise _Shape(f"expected \"h<n>\", got {_show(value)}")
        return int(match.group(1))


@dataclass(frozen=True)
class BoolCodec:
    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def encode(self, value: bool) -> JSON:
        return bool(value)

    def decode(self, value: JSON) -> bool:
        if type(value) is bool:
            return value
        raise _Shape(f"expected true or false, got {_show(value)}")


@dataclass(frozen=True)
class ListCodec:
    """A tuple as a JSON array of ``item`` values."""

    item: Codec

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema}

    def encode(self, value: Sequence[Any]) -> JSON:
        return [self.item.encode(v) for v in value]

    def decode(self, value: JSON) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _Shape(f"expected an array, got {_show(value)}")
        out = []
        semantic: _Semantic | None = None
        for i, item in enumerate(value):
            try:
                out.append(self.item.decode(item))
            except _Shape as exc:
                raise exc.under(i) from None
            except _Semantic as exc:
                semantic = semantic or exc
        if semantic is not None:
            raise semantic
        return tuple(out)


@dataclass(frozen=True)
class ElfCodec:
    """``Open.obj``: an ``ObjectSpec`` as ``{"programs": [...], "license": ...}``, raw
    object bytes as ``{"hex": ...}`` (always hex, even when printable or empty)."""

    spec: ObjectCodec

    @property
    def schema(self) -> dict[str, Any]:
        raw = {"type": "object", "required": ["hex"], "additionalProperties": False,
               "properties": {"hex": {"type": "string", "pattern": _whole(HEX_RE)}}}
        return {"anyOf": [self.spec.schema, raw]}

    def encode(self, value: ObjectSpec | bytes) -> JSON:
        if isinstance(value, ObjectSpec):
            return self.spec.encode(value)
        return {"hex": bytes(value).hex()}

    def decode(self, value: JSON) -> ObjectSpec | bytes:
        if type(value) is dict and value.keys() == {"hex"}:
            raw = value["hex"]
            if type(raw) is str and _HEX.match(raw):
                return bytes.fromhex(raw)
            raise _Shape(f"expected lowercase hex pairs, got {_show(raw)}", ("hex",))
        if type(value) is not dict:
            raise _Shape(f"expected an object ({{\"programs\": ..}} or {{\"hex\": ..}}),"
                         f" got {_show(value)}")
        spec: ObjectSpec = self.spec.decode(value)
        try:
            build_object(spec)
        except ValueError as exc:  # the writer's rules (oracle.bpfelf): the op cannot run
            raise _Semantic(f"$.args.obj: not an object oracle.bpfelf can build: {exc}") from None
        return spec


@dataclass(frozen=True)
class Nullable:
    inner: Codec

    @property
    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "null"}, self.inner.schema]}

    def encode(self, value: Any) -> JSON:
        return None if value is None else self.inner.encode(value)

    def decode(self, value: JSON) -> Any:
        return None if value is None else self.inner.decode(value)


@dataclass(frozen=True)
class Ref:
    """A codec whose schema is a ``$ref`` to a named definition (same behaviour)."""

    name: str
    inner: Codec

    @property
    def schema(self) -> dict[str, Any]:
        return {"$ref": f"#/$defs/{self.name}"}

    def encode(self, value: Any) -> JSON:
        return self.inner.encode(value)

    def decode(self, value: JSON) -> Any:
        return self.inner.decode(value)


@dataclass(frozen=True)
class ObjectCodec:
    """A frozen dataclass as a JSON object with exactly its listed fields, all required."""

    cls: type[Any]
    fields: tuple[tuple[str, Codec], ...]

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [name for name, _ in self.fields],
            "additionalProperties": False,
            "properties": {name: codec.schema for name, codec in self.fields},
        }

    def encode(self, value: Any) -> JSON:
        return {name: codec.encode(getattr(value, name)) for name, codec in self.fields}

    @functools.cached_property
    def _keys(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.fields)

    @functools.cached_property
    def _decoders(self) -> tuple[tuple[str, Callable[[JSON], Any]], ...]:
        return tuple((name, _unref(codec).decode) for name, codec in self.fields)

    def decode(self, value: JSON) -> Any:
        if type(value) is not dict or value.keys() != self._keys:
            if type(value) is not dict:
                raise _Shape(f"expected an object, got {_show(value)}")
            check_keys(value, [n for n, _ in self.fields], ())
        args = []
        semantic: _Semantic | None = None
        for name, decode in self._decoders:
            try:
                args.append(decode(value[name]))
            except _Shape as exc:
                raise exc.under(name) from None
            except _Semantic as exc:  # finish the shape checks first (check_record relies on it)
                semantic = semantic or exc
        if semantic is not None:
            raise semantic
        try:
            return self.cls(*args)
        except OracleError as exc:  # e.g. HandlerOpts: sz larger than the bytes given
            raise _Semantic(str(exc)) from None


def _unref(codec: Codec) -> Codec:
    """The codec a ``Ref`` stands for (same behaviour, one call less)."""
    while isinstance(codec, Ref):
        codec = codec.inner
    return codec


Codec: TypeAlias = (
    IntCodec | BytesCodec | EnumCodec | HandlerCodec | ObjRefCodec | RegistrationCodec | BoolCodec
    | ListCodec | ElfCodec | Nullable | Ref | ObjectCodec
)


def check_keys(obj: dict[str, Any], required: Iterable[str], optional: Iterable[str]) -> None:
    """Raise ``_Shape`` for a missing required key or a key not listed."""
    for key in required:
        if key not in obj:
            raise _Shape(f"missing key {key!r}")
    allowed = set(required) | set(optional)
    for key in obj:
        if key not in allowed:
            raise _Shape(f"unexpected key {key!r}")


U32: Final = Ref("u32", IntCodec(0, U32_MASK))
C_INT: Final = Ref("c_int", IntCodec(INT_MIN, INT_MAX))
NAME: Final = Ref("name", BytesCodec(nullable=True, nul_ok=False))
CALLBACK: Final = Ref("callback", Nullable(ObjectCodec(Callback, (("ret", C_INT),))))
OPTS: Final = Ref(
    "opts",
    Nullable(
        ObjectCodec(
            HandlerOpts,
            (
                ("sz", IntCodec(0, SIZE_MAX)),
                ("cookie", IntCodec(LONG_MIN, LONG_MAX)),
                ("prog_setup_fn", CALLBACK),
                ("prog_prepare_load_fn", CALLBACK),
                ("prog_attach_fn", CALLBACK),
                ("tail", BytesCodec(nullable=False, nul_ok=True)),
            ),
        )
    ),
)

NO_NUL_BYTES: Final = BytesCodec(nullable=False, nul_ok=False)
PROGRAM: Final = Ref(
    "program",
    ObjectCodec(
        Program,
        (
            ("section", NO_NUL_BYTES),
            ("name", NO_NUL_BYTES),
            ("insns", BytesCodec(nullable=False, nul_ok=True)),
        ),
    ),
)
ELF_OBJECT: Final = Ref(
    "elf_object",
    ElfCodec(ObjectCodec(ObjectSpec, (("programs", ListCodec(PROGRAM)), ("license", NAME)))),
)
OBJ: Final = ObjRefCodec()
PROG_INDEX: Final = C_INT  # any C int; out of range is the harness's NO_PROGRAM
OUT_U32: Final = Nullable(U32)
#: an out-parameter's codec (``null`` is "untouched")
OutCodec: TypeAlias = Nullable | Ref
CALLBACK_CALL: Final = Ref(
    "callback_call",
    ObjectCodec(
        CallbackCall,
        (
            ("callback", EnumCodec(("prog_setup_fn", "prog_prepare_load_fn", "prog_attach_fn"))),
            ("registration", RegistrationCodec()),
            ("program", NO_NUL_BYTES),
            ("section", NO_NUL_BYTES),
            ("cookie", IntCodec(LONG_MIN, LONG_MAX)),
            ("ret", C_INT),
        ),
    ),
)

#: every named definition a ``Ref`` points to, for the schema's ``$defs``
REFS: Final[tuple[Ref, ...]] = (U32, C_INT, NAME, CALLBACK, OPTS, PROGRAM, ELF_OBJECT,
                                CALLBACK_CALL)


# ---------------------------------------------------------------------------
# the op table


@dataclass(frozen=True)
class OpKind:
    """One op kind: its name in traces, its dataclass, its argument codecs.

    ``handle``: the prefix of the ``"handle"`` its records carry (``h`` for
    register, ``obj`` for open), "" for none.  ``out``: one codec per
    out-parameter; None means every one is a u32 (or ``null``).
    """

    name: str
    cls: type[Any]
    fields: tuple[tuple[str, Codec], ...]
    handle: str = ""
    out: tuple[OutCodec, ...] | None = None

    @functools.cached_property
    def args(self) -> ObjectCodec:
        return ObjectCodec(self.cls, self.fields)

    @property
    def arity(self) -> int:
        return OUT_ARITY[self.cls]

    @functools.cached_property
    def out_codecs(self) -> tuple[OutCodec, ...]:
        return self.out if self.out is not None else (OUT_U32,) * self.arity


OP_KINDS: Final[tuple[OpKind, ...]] = (
    OpKind(
        "register",
        Register,
        (("sec", NAME), ("prog_type", U32), ("exp_attach_type", U32), ("opts", OPTS)),
        handle="h",
    ),
    OpKind("unregister", Unregister, (("handler", HandlerCodec()),)),
    OpKind("prog_type_by_name", ProgTypeByName, (("name", NAME),)),
    OpKind("attach_type_by_name", AttachTypeByName, (("name", NAME),)),
    OpKind("fault", Fault, (("kind", EnumCodec(FAULT_KINDS)), ("name", NAME))),
    OpKind("open", Open, (("obj", ELF_OBJECT),), handle="obj"),
    OpKind("prog_info", ProgInfo, (("obj", OBJ), ("prog", PROG_INDEX)),
           out=(NAME, NAME, OUT_U32, OUT_U32, OUT_U32)),
    OpKind("set_type", SetType, (("obj", OBJ), ("prog", PROG_INDEX), ("prog_type", U32))),
    OpKind("set_autoload", SetAutoload,
           (("obj", OBJ), ("prog", PROG_INDEX), ("autoload", BoolCodec()))),
    OpKind("load", Load, (("obj", OBJ),)),
    OpKind("attach", Attach, (("obj", OBJ), ("prog", PROG_INDEX))),
    OpKind("close", Close, (("obj", OBJ),)),
)
KIND_BY_NAME: Final = {k.name: k for k in OP_KINDS}
KIND_BY_CLASS: Final[dict[type, OpKind]] = {k.cls: k for k in OP_KINDS}


# ---------------------------------------------------------------------------
# answers


def _errno_names() -> tuple[dict[int, str], dict[str, int]]:
    """(value -> canonical name, every name incl. aliases -> value), Linux errno."""
    canonical = dict(errno.errorcode)
    canonical.update({errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EDEADLK: "EDEADLK",
                      errno.EAGAIN: "EAGAIN"})  # libbpf's and the kernel's spelling
    every = {n: getattr(errno, n) for n in dir(errno) if n[:1] == "E" and n != "EOF"}
    every = {n: v for n, v in every.items() if isinstance(v, int)}
    return canonical, every


ERRNO_NAME, ERRNO_VALUE = _errno_names()
RC_NAMES: Final = {f"-{name}": -value for name, value in ERRNO_VALUE.items()}


def encode_rc(rc: int) -> JSON:
    """``-22`` -> ``"-EINVAL"``; other values as they are."""
    if rc < 0 and -rc in ERRNO_NAME:
        return f"-{ERRNO_NAME[-rc]}"
    return rc


def rc_text(rc: int) -> str:
    """An rc for people: ``-ESRCH (-3)`` or ``0``."""
    name = encode_rc(rc)
    return f"{name} ({rc})" if isinstance(name, str) else str(rc)


def _decode_rc(value: JSON) -> int:
    if type(value) is str:
        if value in RC_NAMES:
            return RC_NAMES[value]
        raise _Shape(f"expected an int or \"-E<errno name>\", got {_show(value)}")
    return int(C_INT.decode(value))


def _decode_out(value: JSON, codecs: tuple[OutCodec, ...]) -> tuple[OutValue, ...]:
    if type(value) is not list:
        raise _Shape(f"expected an array, got {_show(value)}")
    if len(value) != len(codecs):
        raise _Shape(f"expected {len(codecs)} out-parameters, got {len(value)}")
    out: list[OutValue] = []
    for i, (item, codec) in enumerate(zip(value, codecs, strict=True)):
        try:
            out.append(codec.decode(item))
        except _Shape as exc:
            raise exc.under(i) from None
    return tuple(out)


def _encode_out(value: OutValue) -> JSON:
    return NAME.encode(value) if isinstance(value, bytes) else value


def encode_answer(answer: Answer) -> dict[str, Any]:
    """``{"rc", "out"}``, plus ``"calls"`` when libbpf called any callback."""
    obj: dict[str, Any] = {"rc": encode_rc(answer.rc), "out": [_encode_out(v) for v in answer.out]}
    if answer.calls:
        obj["calls"] = [CALLBACK_CALL.encode(c) for c in answer.calls]
    return obj


_ANSWER_KEYS: Final = frozenset(("rc", "out"))
_ANSWER_OPTIONAL: Final = ("calls",)
_CALLS: Final = ListCodec(CALLBACK_CALL)
_answers: dict[tuple[int, tuple[int | None, ...]], Answer] = {}


def _decode_answer(value: JSON, kind: OpKind) -> Answer:
    """The answer; common well-formed answers take the fast path and are shared."""
    if type(value) is dict and kind.out is None and value.keys() == _ANSWER_KEYS:
        rc, out = value["rc"], value["out"]
        if type(rc) is str:
            rc = RC_NAMES.get(rc)
        elif not (type(rc) is int and INT_MIN <= rc <= INT_MAX):
            rc = None
        if rc is not None and type(out) is list and len(out) == kind.arity:
            for v in out:
                if v is not None and not (type(v) is int and 0 <= v <= U32_MASK):
                    break
            else:
                key = (rc, tuple(out))
                answer = _answers.get(key)
                if answer is None:
                    if len(_answers) >= CACHE_LIMIT:
                        _answers.clear()
                    answer = _answers[key] = Answer(*key)
                return answer
    return _decode_answer_checked(value, kind.out_codecs)


def _decode_answer_checked(value: JSON, out_codecs: tuple[OutCodec, ...]) -> Answer:
    if type(value) is not dict:
        raise _Shape(f"expected an object, got {_show(value)}")
    check_keys(value, ("rc", "out"), _ANSWER_OPTIONAL)
    try:
        rc = _decode_rc(value["rc"])
    except _Shape as exc:
        raise exc.under("rc") from None
    try:
        out = _decode_out(value["out"], out_codecs)
    except _Shape as exc:
        raise exc.under("out") from None
    calls: tuple[CallbackCall, ...] = ()
    if "calls" in value:
        try:
            calls = _CALLS.decode(value["calls"])
        except _Shape as exc:
            raise exc.under("calls") from None
    return Answer(rc, out, calls)


def decode_answer(value: JSON, arity: int | None = None, *, op: type | None = None) -> Answer:
    """An ``Answer`` from its JSON form.

    ``op`` (an op class) checks the out-parameters against that kind's; else
    ``arity`` checks their number, each a u32 or ``null`` (default: as many as given).
    """
    if op is not None:
        codecs = _kind_of(op).out_codecs
    else:
        if arity is None:
            out = value.get("out") if type(value) is dict else None
            arity = len(out) if type(out) is list else 0
        codecs = (OUT_U32,) * arity
    try:
        return _decode_answer_checked(value, codecs)
    except _Shape as exc:
        raise TraceError(f"schema violation at {json_path(exc.path)}: {exc.message}") from None


def _kind_of(cls: type) -> OpKind:
    kind = KIND_BY_CLASS.get(cls)
    if kind is None:
        raise TraceError(f"not an op of the op language: {cls!r}")
    return kind


# ---------------------------------------------------------------------------
# ops and records


def encode_op(op: Op) -> dict[str, Any]:
    """``{"op": kind, "args": {...}}`` (a register's ``handle`` is added by ``encode_record``)."""
    kind = KIND_BY_CLASS.get(type(op))
    if kind is None:
        raise TraceError(f"not an op of the op language: {op!r}")
    return {"op": kind.name, "args": kind.args.encode(op)}


def _decode_op(obj: dict[str, Any]) -> tuple[OpKind, Op]:
    name = obj["op"]
    kind = KIND_BY_NAME.get(name) if type(name) is str else None
    if kind is None:
        raise _Shape(f"unknown op {_show(name)}: expected one of {', '.join(KIND_BY_NAME)}",
                     ("op",))
    try:
        return kind, kind.args.decode(obj["args"])
    except _Shape as exc:
        raise exc.under("args") from None


def decode_op(obj: JSON) -> Op:
    """An op from ``{"op": kind, "args": {...}}`` (other keys are ignored)."""
    try:
        if type(obj) is not dict:
            raise _Shape(f"expected an object, got {_show(obj)}")
        check_keys(obj, ("op", "args"), obj.keys())
        return _decode_op(obj)[1]
    except _Shape as exc:
        raise TraceError(f"schema violation at {json_path(exc.path)}: {exc.message}") from None
    except _Semantic as exc:
        raise TraceError(str(exc)) from None


def encode_record(record: Record, handle: int | None = None) -> dict[str, Any]:
    """A record's JSON object; ``handle`` is the index of the register (or open) it is,
    counting records of its kind (register and open records only)."""
    obj = encode_op(record.op)
    kind = KIND_BY_CLASS[type(record.op)]
    if kind.handle:
        if handle is None:
            raise TraceError(f"a {kind.name} record needs its handle index")
        obj["handle"] = f"{kind.handle}{handle}"
    if record.answer is not None:
        obj["answer"] = encode_answer(record.answer)
    if record.log:
        obj["log"] = list(record.log)
    return obj


_RECORD_OPTIONAL: Final = ("handle", "answer", "log")
_RECORD_KEYS: Final = frozenset(("op", "args", *_RECORD_OPTIONAL))


def _decode_record(obj: JSON) -> tuple[Record, int | None]:
    """A record and its handle index (None unless a register); raises _Shape/_Semantic."""
    if type(obj) is not dict:
        raise _Shape(f"expected an object, got {_show(obj)}")
    if not (obj.keys() <= _RECORD_KEYS and "op" in obj and "args" in obj):
        check_keys(obj, ("op", "args"), _RECORD_OPTIONAL)
    kind, op, semantic = _decode_op_deferred(obj)
    handle = _decode_handle(obj, kind)
    answer = None
    if "answer" in obj:
        try:
            answer = _decode_answer(obj["answer"], kind)
        except _Shape as exc:
            raise exc.under("answer") from None
    log: tuple[str, ...] = ()
    if "log" in obj:
        log = _decode_log(obj["log"])
    if semantic is not None:  # raised only once the whole record's shape is known good
        raise semantic
    assert op is not None
    return Record(op, answer, log), handle


def _decode_op_deferred(obj: dict[str, Any]) -> tuple[OpKind, Op | None, _Semantic | None]:
    name = obj["op"]
    kind = KIND_BY_NAME.get(name) if type(name) is str else None
    if kind is None:
        _decode_op(obj)  # raises the unknown-op _Shape
        raise AssertionError("unreachable")
    try:
        return kind, kind.args.decode(obj["args"]), None
    except _Shape as exc:
        raise exc.under("args") from None
    except _Semantic as exc:
        return kind, None, exc


_HANDLE_PATTERNS: Final = {"h": _HANDLE, "obj": _OBJ_REF}


def _decode_handle(obj: dict[str, Any], kind: OpKind) -> int | None:
    if not kind.handle:
        if "handle" in obj:
            raise _Shape("unexpected key 'handle': only register and open records have one")
        return None
    if "handle" not in obj:
        raise _Shape("missing key 'handle'")
    value = obj["handle"]
    match = _HANDLE_PATTERNS[kind.handle].match(value) if type(value) is str else None
    if match is None:
        raise _Shape(f"expected \"{kind.handle}<n>\", got {_show(value)}", ("handle",))
    return int(match.group(1))


def _decode_log(value: JSON) -> tuple[str, ...]:
    if type(value) is not list:
        raise _Shape(f"expected an array of strings, got {_show(value)}", ("log",))
    for i, line in enumerate(value):
        if type(line) is not str:
            raise _Shape(f"expected a string, got {_show(line)}", ("log", i))
    return tuple(value)


def check_record(obj: JSON) -> str | None:
    """Why the schema rejects record ``obj`` (``"$.path: why"``), or None if it accepts it.

    The hand-written twin of validating against the schema's ``record``
    definition; rules the schema cannot express are not checked here.
    """
    try:
        _decode_record(obj)
    except _Shape as exc:
        return f"{json_path(exc.path)}: {exc.message}"
    except _Semantic:
        return None
    return None


# ---------------------------------------------------------------------------
# the JSON Schema, derived from the codecs


def schema_document() -> dict[str, Any]:
    """The trace-v1 JSON Schema, built from ``OP_KINDS`` and the codecs."""
    defs: dict[str, Any] = {
        "header": _header_schema(),
        "record": {
            "type": "object",
            "required": ["op", "args"],
            "properties": {"op": {"enum": list(KIND_BY_NAME)}},
            "allOf": [
                {"if": {"required": ["op"], "properties": {"op": {"const": k.name}}},
                 "then": {"$ref": f"#/$defs/record_{k.name}"}}
                for k in OP_KINDS
            ],
        },
        "handle": HANDLE_SCHEMA,
        "obj_ref": OBJ_REF_SCHEMA,
        "rc": {"anyOf": [{"$ref": "#/$defs/c_int"}, {"enum": sorted(RC_NAMES)}]},
        "log": {"type": "array", "items": {"type": "string"}},
    }
    for ref in REFS:
        defs[ref.name] = ref.inner.schema
    for kind in OP_KINDS:
        defs[f"record_{kind.name}"] = _record_schema(kind)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/libbpf-sec-oracle/schemas/trace-v1.schema.json",
        "title": "libbpf-sec-oracle trace, format_version 1 (JSON Lines)",
        "description": "Line 1 is a header, every further line a record. Generated by "
        "oracle.traces.schema_document(); do not edit by hand.",
        "oneOf": [{"$ref": "#/$defs/header"}, {"$ref": "#/$defs/record"}],
        "$defs": defs,
    }


def _header_schema() -> dict[str, Any]:
    string_or_null = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["format", "format_version", "libbpf", "oracle_version", "seed", "origin",
                     "created"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT},
            "format_version": {"const": FORMAT_VERSION},
            "libbpf": {
                "type": "object",
                "required": ["version", "variant", "so_sha256", "path"],
                "additionalProperties": False,
                "properties": {
                    "version": {"type": "string", "pattern": _whole(r"[0-9]+(?:\.[0-9]+)*")},
                    "variant": {"enum": list(VARIANTS)},
                    "so_sha256": {"anyOf": [{"type": "null"},
                                            {"type": "string", "pattern": _whole("[0-9a-f]{64}")}]},
                    "path": string_or_null,
                },
            },
            "oracle_version": {"type": "string", "minLength": 1},
            "seed": {"type": ["integer", "null"]},
            "origin": {"type": "string", "pattern": _whole("[a-z][a-z0-9_-]*")},
            "created": {
                "type": "string",
                "pattern": _whole(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                  r"(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"),
            },
            "note": {"type": "string"},
        },
    }


def _record_schema(kind: OpKind) -> dict[str, Any]:
    properties: dict[str, Any] = {"op": {"const": kind.name}, "args": kind.args.schema}
    required = ["op", "args"]
    if kind.handle:
        properties["handle"] = {"$ref": "#/$defs/" + {"h": "handle", "obj": "obj_ref"}[kind.handle]}
        required.append("handle")
    out: dict[str, Any] = {"type": "array", "minItems": kind.arity, "maxItems": kind.arity}
    if kind.out is None:
        out["items"] = OUT_U32.schema
    else:
        out["prefixItems"] = [codec.schema for codec in kind.out]
        out["items"] = False
    properties["answer"] = {
        "type": "object",
        "required": ["rc", "out"],
        "additionalProperties": False,
        "properties": {
            "rc": {"$ref": "#/$defs/rc"},
            "out": out,
            "calls": {"type": "array", "items": CALLBACK_CALL.schema},
        },
    }
    properties["log"] = {"$ref": "#/$defs/log"}
    return {"type": "object", "required": required, "additionalProperties": False,
            "properties": properties}


def schema_path() -> Path:
    return Path(str(resources.files("oracle") / "schemas" / SCHEMA_FILE))


@functools.cache
def load_schema() -> dict[str, Any]:
    """The schema file shipped in the package."""
    with resources.files("oracle").joinpath("schemas", SCHEMA_FILE).open("rb") as f:
        document: dict[str, Any] = json.load(f)
    return document


def write_schema(path: Path | None = None) -> Path:
    """(Re)generate the schema file from ``schema_document()``."""
    target = path or schema_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(schema_document(), indent=2) + "\n")
    return target


@functools.cache
def validator(definition: str) -> Any:
    """A jsonschema validator for one definition of the shipped schema (``header``, ``record``)."""
    from jsonschema import Draft202012Validator

    document = load_schema()
    return Draft202012Validator({"$defs": document["$defs"], "$ref": f"#/$defs/{definition}"})


def schema_error(definition: str, obj: JSON) -> str | None:
    """jsonschema's verdict on ``obj``: ``"$.path: message"`` of the best error, or None."""
    from jsonschema.exceptions import best_match

    error = best_match(validator(definition).iter_errors(obj))
    if error is None:
        return None
    return f"{error.json_path}: {error.message}"


# ---------------------------------------------------------------------------
# header


def encode_header(header: TraceHeader) -> dict[str, Any]:
    info = header.libbpf
    obj: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "libbpf": {"version": info.version, "variant": info.variant,
                   "so_sha256": info.so_sha256, "path": info.path},
        "oracle_version": header.oracle_version,
        "seed": header.seed,
        "origin": header.origin,
        "created": header.created,
    }
    if header.note is not None:
        obj["note"] = header.note
    return obj


def decode_header(obj: JSON) -> TraceHeader:
    """A header from its JSON object; a ``TraceError`` (no file/line) if it is not one."""
    if type(obj) is not dict:
        raise TraceError(f"not a trace header: expected an object, got {_show(obj)}")
    if obj.get("format") != FORMAT:
        raise TraceError(f"not a libbpf-sec-oracle trace: format is {_show(obj.get('format'))},"
                         f" expected {FORMAT!r}")
    version = obj.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise TraceError(f"written by a newer libbpf-sec-oracle: format_version {version} >"
                         f" {FORMAT_VERSION}")
    problem = schema_error("header", obj)
    if problem is not None:
        raise TraceError(f"schema violation at {problem}")
    info = obj["libbpf"]
    return TraceHeader(
        libbpf=LibbpfInfo(info["version"], info["variant"], info["so_sha256"], info["path"]),
        origin=obj["origin"],
        seed=obj["seed"],
        oracle_version=obj["oracle_version"],
        created=obj["created"],
        note=obj.get("note"),
    )


# ---------------------------------------------------------------------------
# writing


def dump_line(obj: JSON) -> str:
    return json.dumps(obj, ensure_ascii=True) + "\n"


def iter_lines(header: TraceHeader, records: Iterable[Record]) -> Iterator[str]:
    """The trace's lines, handles numbered as the module rules say."""
    yield dump_line(encode_header(header))
    counts = {Register: 0, Open: 0}
    for record in records:
        cls = type(record.op)
        if cls in counts:
            yield dump_line(encode_record(record, counts[cls]))
            counts[cls] += 1
        else:
            yield dump_line(encode_record(record))


def write_trace(path: str | os.PathLike[str], header: TraceHeader,
                records: Iterable[Record]) -> Path:
    """Write a trace atomically (temp file + fsync + rename); returns the path."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.writelines(iter_lines(header, records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


# ---------------------------------------------------------------------------
# reading


_DECODER: Final = json.JSONDecoder()


def _parse_json(raw: bytes) -> JSON:
    """``json.loads`` of one line (ending in a newline), minus its per-call overhead."""
    text = raw.decode("utf-8")
    obj, end = _DECODER.raw_decode(text)
    if end != len(text) - 1 and text[end:].strip():
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


class TraceReader:
    """Streams one trace: ``header`` on open, then records by iteration.

    ``lineno`` is the line of the record last yielded (1-based; the header
    is line 1).  Iterate once; use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lineno = 0
        try:
            self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def error(self, what: str, line: int | None = None) -> TraceError:
        return TraceError(f"{self.path}: line {line or self.lineno}: {what}")

    def _read_header(self) -> TraceHeader:
        raw = self._file.readline()
        self.lineno = 1
        if not raw:
            raise TraceError(f"{self.path}: empty file (no header line)")
        obj = self._parse(raw)
        try:
            return decode_header(obj)
        except TraceError as exc:
            raise self.error(str(exc)) from None

    def _parse(self, raw: bytes) -> JSON:
        if not raw.endswith(b"\n"):
            raise self.error("truncated last line (no final newline): the write was cut off")
        if not raw.strip():
            raise self.error("empty line")
        try:
            return _parse_json(raw)
        except UnicodeDecodeError as exc:
            raise self.error(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        except ValueError as exc:
            raise self.error(f"not JSON: {exc}") from None

    def __iter__(self) -> Iterator[Record]:
        if self.lineno != 1:
            raise TraceError(f"{self.path}: a TraceReader's records can be read only once")
        cache: dict[bytes, Record] = {}
        counts = {Register: 0, Open: 0}  # records of each handle-carrying kind so far
        lineno = self.lineno
        for raw in self._file:
            lineno += 1
            cached = cache.get(raw)
            if cached is not None:
                self.lineno = lineno
                yield cached
                continue
            self.lineno = lineno
            record, handle = self._decode(raw)
            self._check_refs(record, counts[Register], counts[Open])
            if handle is not None:
                cls = type(record.op)
                kind = KIND_BY_CLASS[cls]
                if handle != counts[cls]:
                    n = counts[cls]
                    raise self.error(f"{kind.name} record has handle {kind.handle}{handle},"
                                     f" expected {kind.handle}{n} (the {_ordinal(n)} {kind.name})")
                counts[cls] += 1
            else:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[raw] = record
            yield record

    def _decode(self, raw: bytes) -> tuple[Record, int | None]:
        obj = self._parse(raw)
        try:
            return _decode_record(obj)
        except _Shape as exc:
            raise self.error(f"schema violation at {json_path(exc.path)}: {exc.message}") from None
        except _Semantic as exc:
            raise self.error(str(exc)) from None

    def _check_refs(self, record: Record, registers: int, opens: int) -> None:
        """``h<n>`` and ``obj<n>`` must name a register / open record before this line."""
        op = record.op
        handler = op.handler if isinstance(op, Unregister) else None
        if isinstance(handler, HandleRef) and handler.index >= registers:
            raise self.error(f"$.args.handler: {handler} names a register record that"
                             f" is not before this line ({registers} so far)")
        ref = getattr(op, "obj", None)
        if isinstance(ref, ObjRef) and ref.index >= opens:
            raise self.error(f"$.args.obj: {ref} names an open record that is not before"
                             f" this line ({opens} so far)")
        if record.answer is not None:
            for i, call in enumerate(record.answer.calls):
                if call.registration >= registers:
                    raise self.error(f"$.answer.calls[{i}].registration: h{call.registration}"
                                     " names a register record that is not before this line"
                                     f" ({registers} so far)")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _ordinal(index: int) -> str:
    n = index + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def read_header(path: str | os.PathLike[str]) -> TraceHeader:
    with TraceReader(path) as reader:
        return reader.header


def iter_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """The records of a trace, streamed and validated (the header is checked too)."""
    with TraceReader(path) as reader:
        yield from reader


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """A whole trace in memory, validated."""
    with TraceReader(path) as reader:
        return Trace(reader.header, tuple(reader))


__all__: Final[Sequence[str]] = [
    "FORMAT", "FORMAT_VERSION", "OP_KINDS", "LibbpfInfo", "OpKind", "Record", "Trace",
    "TraceHeader", "TraceReader", "check_record", "decode_answer", "decode_header", "decode_op",
    "encode_answer", "encode_header", "encode_op", "encode_record", "iter_records", "read_header",
    "read_trace", "records_of", "schema_document", "write_schema", "write_trace",
]

