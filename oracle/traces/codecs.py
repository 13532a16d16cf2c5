"""Value codecs: encode, decode (raises ``_Shape``/``_Semantic``) and JSON Schema.

Each codec turns one kind of value (an int in a range, a byte string, a
handle, a dataclass, ...) into its JSON form and back, and states its JSON
Schema; the named codecs (``U32``, ``C_INT``, ``NAME``, ``OPTS``, ...) are the
building blocks of the op table (``oracle.traces.kinds``).  ``REFS`` lists every
named definition the schema's ``$defs`` gets.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from oracle.bpfelf import ObjectSpec, Program, build_object
from oracle.errors import OracleError
from oracle.ops import (
    INT_MAX,
    U32_MASK,
    Callback,
    CallbackCall,
    HandleRef,
    HandlerOpts,
    ObjRef,
)
from oracle.traces.records import MAX_OBJECT_BYTES

INT_MIN: Final = -(2**31)
SIZE_MAX: Final = 2**64 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1

JSON: TypeAlias = Any  # what json.loads returns


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
# The schema's HEX_RE as the decoder checks it: a repeated group costs the
# regex engine ~100 bytes per repetition (a 10 MB hex string took 600 MB), a
# repeated character class nothing.
_HEX_CHARS = re.compile(r"[0-9a-f]*\Z")


def _hex_bytes(text: str, nul_ok: bool = True) -> bytes | None:
    """The bytes ``text`` spells as HEX_RE (``nul_ok=False``: HEX_NO_NUL_RE), else None."""
    if len(text) % 2 or not _HEX_CHARS.match(text):
        return None
    data = bytes.fromhex(text)
    return data if nul_ok or b"\0" not in data else None


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
            data = _hex_bytes(value["hex"], self.nul_ok)
            if data is not None:
                return data
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
            data = _hex_bytes(raw) if type(raw) is str else None
            if data is not None:
                if len(data) > MAX_OBJECT_BYTES:
                    raise _Semantic(f"$.args.obj: {len(data)} bytes of object, more than the"
                                    f" limit of {MAX_OBJECT_BYTES} (MAX_OBJECT_BYTES)")
                return data
            raise _Shape(f"expected lowercase hex pairs, got {_show(raw)}", ("hex",))
        if type(value) is not dict:
            raise _Shape(f"expected an object ({{\"programs\": ..}} or {{\"hex\": ..}}),"
                         f" got {_show(value)}")
        spec: ObjectSpec = self.spec.decode(value)
        try:
            size = len(build_object(spec))
        except ValueError as exc:  # the writer's rules (oracle.bpfelf): the op cannot run
            raise _Semantic(f"$.args.obj: not an object oracle.bpfelf can build: {exc}") from None
        if size > MAX_OBJECT_BYTES:
            raise _Semantic(f"$.args.obj: the spec builds a {size}-byte object, more than the"
                            f" limit of {MAX_OBJECT_BYTES} (MAX_OBJECT_BYTES)")
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
