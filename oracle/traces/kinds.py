"""The op table and the record codec: ops, answers and records to JSON and back.

``OP_KINDS`` gives each op kind of ``oracle.ops.OP_SPECS`` (whence its name, its
handle and its out-parameters) one codec per field, in ``OP_SPECS`` order (checked
at import); the encoders and the hand decoder here (and the JSON Schema in
``oracle.traces.schema``) are derived from it.  Also errno names for ``rc``.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass
from typing import Any, Final

from oracle.errors import TraceError
from oracle.ops import (
    FAULT_KINDS,
    INT_MAX,
    OP_SPECS,
    OUT_ARITY,
    U32_MASK,
    Answer,
    Attach,
    AttachTypeByName,
    CallbackCall,
    Close,
    Fault,
    Load,
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
from oracle.traces.codecs import (
    _HANDLE,
    _OBJ_REF,
    C_INT,
    CALLBACK_CALL,
    ELF_OBJECT,
    INT_MIN,
    JSON,
    NAME,
    OBJ,
    OPTS,
    OUT_U32,
    PROG_INDEX,
    U32,
    BoolCodec,
    Codec,
    EnumCodec,
    HandlerCodec,
    ListCodec,
    ObjectCodec,
    OutCodec,
    _Semantic,
    _Shape,
    _show,
    check_keys,
    json_path,
)
from oracle.traces.records import Record

CACHE_LIMIT: Final = 1 << 16


# ---------------------------------------------------------------------------
# the op table


@dataclass(frozen=True)
class OpKind:
    """One op kind: its dataclass and its argument codecs; the rest is ``oracle.ops.OP_SPECS``.

    ``name``: its name there; ``handle``: the prefix of the ``"handle"`` its
    records carry, what the op makes (``h`` for register, ``obj`` for open), ""
    for none; ``out``: one codec per out-parameter where one of them is a string,
    None where every one is a u32 (or ``null``).
    """

    cls: type[Any]
    fields: tuple[tuple[str, Codec], ...]

    @functools.cached_property
    def name(self) -> str:
        return OP_SPECS[self.cls].name

    @functools.cached_property
    def handle(self) -> str:
        return OP_SPECS[self.cls].makes

    @functools.cached_property
    def out(self) -> tuple[OutCodec, ...] | None:
        out = OP_SPECS[self.cls].out
        if all(f.kind != "string" for f in out):
            return None
        return tuple(NAME if f.kind == "string" else OUT_U32 for f in out)

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
    OpKind(Register,
           (("sec", NAME), ("prog_type", U32), ("exp_attach_type", U32), ("opts", OPTS))),
    OpKind(Unregister, (("handler", HandlerCodec()),)),
    OpKind(ProgTypeByName, (("name", NAME),)),
    OpKind(AttachTypeByName, (("name", NAME),)),
    OpKind(Fault, (("kind", EnumCodec(FAULT_KINDS)), ("name", NAME))),
    OpKind(Open, (("obj", ELF_OBJECT),)),
    OpKind(ProgInfo, (("obj", OBJ), ("prog", PROG_INDEX))),
    OpKind(SetType, (("obj", OBJ), ("prog", PROG_INDEX), ("prog_type", U32))),
    OpKind(SetAutoload, (("obj", OBJ), ("prog", PROG_INDEX), ("autoload", BoolCodec()))),
    OpKind(Load, (("obj", OBJ),)),
    OpKind(Attach, (("obj", OBJ), ("prog", PROG_INDEX))),
    OpKind(Close, (("obj", OBJ),)),
)
if [k.cls for k in OP_KINDS] != list(OP_SPECS):
    raise AssertionError("OP_KINDS must give every op kind of OP_SPECS, in its order")
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
