"""oracle.traces (JSON Lines codec, schema, bad input) and oracle.replay (on the oracle)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import errno
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oracle import Oracle
from oracle.bpfelf import RETURN_0, ObjectSpec, Program
from oracle.campaign.lifecycle_gen import LifecycleGenerator
from oracle.errors import TraceError
from oracle.ops import (
    FAULT_KINDS,
    NO_BPF,
    NO_OBJECT,
    NO_PROGRAM,
    OUT_ARITY,
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
from oracle.replay import (
    ReplayResult,
    TraceResult,
    bench_replay,
    describe,
    lifecycle_demo_ops,
    op_text,
    record_line,
    register,
    replay,
    text_report,
)
from oracle.traces import (
    OP_KINDS,
    LibbpfInfo,
    Record,
    Trace,
    TraceHeader,
    check_record,
    decode_answer,
    decode_header,
    decode_op,
    encode_answer,
    encode_header,
    encode_op,
    encode_record,
    iter_records,
    load_schema,
    read_trace,
    records_of,
    schema_document,
    schema_error,
    write_trace,
)
from tests import strategies as names
from tests.divergence_cases import CASES, LIFECYCLE_CASES, MODEL_ANSWERS, expected

HEADER = TraceHeader(LibbpfInfo("1.7.0", "plain"), origin="hand", seed=7,
                     created="2025-01-02T03:04:05+00:00")

SPEC = ObjectSpec((Program(b"abc"), Program(b"\xff?x/\"", b"f_2", b"\0" * 8 + RETURN_0)), None)
EVERY_KIND: list[tuple[Op, Answer | None]] = [
    (Register(b"abc/", 2, 0), Answer(1)),
    (Register(None, 2**32 - 1, 2**32 - 1), Answer(-errno.EEXIST)),
    (Register(b"\x01\xff/+?", 0, 0, HandlerOpts()), Answer(3)),
    (Register(b"", 1, 0, HandlerOpts(sz=2**64 - 1, cookie=-(2**63), tail=b"\0\x01\xff")), None),
    (Register(b"a", 1, 0, HandlerOpts(sz=48, cookie=2**63 - 1, tail=b"\0" * 8,
                                      prog_setup_fn=Callback(-1),
                                      prog_prepare_load_fn=Callback(2**31 - 1),
                                      prog_attach_fn=Callback(-(2**31))),), Answer(-4001)),
    (Unregister(HandleRef(0)), Answer(0)),
    (Unregister(HandleRef(4)), Answer(-errno.ENOENT)),
    (Unregister(-(2**31)), Answer(-errno.EINVAL)),
    (Unregister(2**31 - 1), None),
    (ProgTypeByName(None), Answer(-errno.EINVAL, (None, None))),
    (ProgTypeByName(b"kprobe/x"), Answer(0, (2, 0))),
    (ProgTypeByName(b'"\\\n\t\x7f'), Answer(0, (2**32 - 1, None))),
    (AttachTypeByName(b"cgroup/connect4"), Answer(0, (10,))),
    (AttachTypeByName(b""), Answer(-errno.ESRCH, (None,))),
    *[(Fault(kind), None) for kind in FAULT_KINDS],
    (Fault("null_out", None), None),
    (Open(SPEC), Answer(0, (2,), (
        CallbackCall("prog_setup_fn", 0, b"prog0", b"abc", -(2**63), -1),
        CallbackCall("prog_setup_fn", 4, b"f_2", b"\xff?x/\"", 2**63 - 1, 2**31 - 1)))),
    (Open(b""), Answer(-errno.EINVAL, (None,))),
    (Open(b"\x7fELF\0"), None),
    (Open(ObjectSpec((), None)), Answer(-errno.ENOENT, (None,))),
    (ProgInfo(ObjRef(0), 1), Answer(0, (b"f_2", b"\xff?x/\"", 2**32 - 1, 0, 1))),
    (ProgInfo(ObjRef(3), -1), Answer(NO_PROGRAM, (None,) * 5)),
    (ProgInfo(ObjRef(0), 2**31 - 1), None),
    (SetType(ObjRef(0), 0, 2**32 - 1), Answer(-errno.EBUSY)),
    (SetAutoload(ObjRef(1), 0, True), Answer(NO_OBJECT)),
    (SetAutoload(ObjRef(0), -(2**31), False), None),
    (Load(ObjRef(0)), Answer(0, (), (
        CallbackCall("prog_prepare_load_fn", 2, b"prog0", b"abc", 0, 0),))),
    (Load(ObjRef(2)), Answer(NO_BPF)),
    (Attach(ObjRef(0), 1), Answer(-errno.EOPNOTSUPP, (), (
        CallbackCall("prog_attach_fn", 4, b"f_2", b"\xff?x/\"", 7, -(2**31)),))),
    (Close(ObjRef(0)), Answer(0)),
    (Close(ObjRef(0)), Answer(NO_OBJECT)),
]


def write_lines(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_text(text)
    return path


def header_line(**changes: Any) -> str:
    obj = encode_header(HEADER)
    obj.update(changes)
    return json.dumps(obj)


# ---------------------------------------------------------------------------
# round trips


def test_every_op_kind_has_a_round_trip_case() -> None:
    assert {type(op) for op, _ in EVERY_KIND} == {k.cls for k in OP_KINDS}


@pytest.mark.parametrize(("op", "answer"), EVERY_KIND, ids=[repr(op)[:50] for op, _ in EVERY_KIND])
def test_op_and_answer_round_trip(op: Op, answer: Answer | None) -> None:
    assert decode_op(json.loads(json.dumps(encode_op(op)))) == op
    if answer is not None:
        encoded = json.loads(json.dumps(encode_answer(answer)))
        assert decode_answer(encoded, op=type(op)) == answer
        if all(not isinstance(v, bytes) for v in answer.out):
            assert decode_answer(encoded, OUT_ARITY[type(op)]) == answer


def test_file_round_trip_of_every_kind(tmp_path: Path) -> None:
    records = [Record(op, answer, ("libbpf: a log line",) if i % 2 else ())
               for i, (op, answer) in enumerate(EVERY_KIND)]
    path = write_trace(tmp_path / "t.jsonl", HEADER, records)
    trace = read_trace(path)
    assert trace == Trace(HEADER, tuple(records))
    assert list(iter_records(path)) == records


def test_encoding_conventions() -> None:
    reg = encode_record(Record(Register(b"a\x00b"[:1] + b"\x01", 2, 0), Answer(-22)), 3)
    assert reg == {"op": "register", "args": {"sec": {"hex": "6101"}, "prog_type": 2,
                                               "exp_attach_type": 0, "opts": None},
                   "handle": "h3", "answer": {"rc": "-EINVAL", "out": []}}
    unreg = encode_record(Record(Unregister(HandleRef(3)), Answer(-4000)))
    assert unreg["args"] == {"handler": "h3"} and unreg["answer"]["rc"] == -4000
    assert encode_op(ProgTypeByName(None))["args"] == {"name": None}
    assert encode_answer(Answer(-errno.EOPNOTSUPP, ()))["rc"] == "-EOPNOTSUPP"


def test_lifecycle_encoding_conventions() -> None:
    spec = ObjectSpec((Program(b"abc", b"f"),))
    call = CallbackCall("prog_setup_fn", 2, b"f", b"abc", 7, -1)
    opened = encode_record(Record(Open(spec), Answer(0, (1,), (call,))), 3)
    assert opened == {
        "op": "open",
        "args": {"obj": {"programs": [{"section": "abc", "name": "f",
                                       "insns": {"hex": RETURN_0.hex()}}], "license": "GPL"}},
        "handle": "obj3",
        "answer": {"rc": 0, "out": [1], "calls": [
            {"callback": "prog_setup_fn", "registration": "h2", "program": "f",
             "section": "abc", "cookie": 7, "ret": -1}]}}
    assert encode_op(Open(b"GPL"))["args"] == {"obj": {"hex": "47504c"}}  # raw: always hex
    assert encode_op(Open(b""))["args"] == {"obj": {"hex": ""}}
    info = encode_record(Record(ProgInfo(ObjRef(3), 0), Answer(0, (b"f", b"\xff", 5, 0, 1))))
    assert info == {"op": "prog_info", "args": {"obj": "obj3", "prog": 0},
                    "answer": {"rc": 0, "out": ["f", {"hex": "ff"}, 5, 0, 1]}}
    assert encode_op(SetAutoload(ObjRef(0), 1, False))["args"] == {
        "obj": "obj0", "prog": 1, "autoload": False}
    assert "calls" not in encode_answer(Answer(0))  # empty calls are omitted...
    assert decode_answer({"rc": 0, "out": [], "calls": []}) == Answer(0)  # ...or may be []
    with pytest.raises(TraceError, match="a open record needs its handle index"):
        encode_record(Record(Open(b"")))


def test_reader_accepts_non_canonical_alternatives() -> None:
    assert decode_answer({"rc": -22, "out": []}) == Answer(-22)
    assert decode_answer({"rc": "-ENOTSUP", "out": []}) == Answer(-errno.EOPNOTSUPP)
    assert decode_answer({"rc": 0.0, "out": [2.0, None]}) == Answer(0, (2, None))
    assert decode_op({"op": "prog_type_by_name", "args": {"name": {"hex": "6162"}}}) == (
        ProgTypeByName(b"ab"))


def test_header_round_trip() -> None:
    header = TraceHeader(LibbpfInfo("1.1.2", "asan", "ab" * 32, "/cache/libbpf.so.1"),
                         origin="shrink", seed=None, note="found by campaign 3")
    assert decode_header(json.loads(json.dumps(encode_header(header)))) == header


def test_shipped_schema_is_the_generated_one() -> None:
    assert load_schema() == json.loads(json.dumps(schema_document())), (
        "regenerate: python -c 'from oracle.traces import write_schema; write_schema()'")


# ---------------------------------------------------------------------------
# hypothesis: round trip, and the hand check agrees with jsonschema

u32 = st.integers(0, 2**32 - 1)
c_int = st.integers(-(2**31), 2**31 - 1)
name_or_null = st.one_of(st.none(), names.names)
callbacks = st.one_of(st.none(), st.builds(Callback, c_int))


@st.composite
def handler_opts(draw: st.DrawFn) -> HandlerOpts:
    tail = draw(st.binary(max_size=12))
    big = st.integers(2**63 + 40, 2**64 - 1)  # [2**63, 2**63 + 39] make libbpf read ~2**63 bytes
    sz = draw(st.one_of(st.integers(0, 40 + len(tail)), big))
    return HandlerOpts(sz, draw(st.integers(-(2**63), 2**63 - 1)), draw(callbacks),
                       draw(callbacks), draw(callbacks), tail)


no_nul = names.raw_bytes
programs = st.builds(
    Program, no_nul, st.sampled_from([b"", b"f", b"_x9", b"prog0"]),
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=2).map(b"".join))
specs = st.builds(ObjectSpec, st.lists(programs, max_size=3).map(tuple),
                  st.one_of(st.none(), no_nul)).filter(
    lambda spec: len({p.name or b"prog%d" % i for i, p in enumerate(spec.programs)})
    == len(spec.programs))
longs = st.integers(-(2**63), 2**63 - 1)


def out_values(op: Op) -> st.SearchStrategy[tuple[OutValue, ...]]:
    if isinstance(op, ProgInfo):
        strings = st.one_of(st.none(), no_nul)
        return st.tuples(strings, strings, *[st.one_of(st.none(), u32)] * 3)
    return st.tuples(*[st.one_of(st.none(), u32)] * OUT_ARITY[type(op)])


@st.composite
def op_sequences(draw: st.DrawFn) -> list[Record]:
    records: list[Record] = []
    registers = opens = 0
    for _ in range(draw(st.integers(0, 12))):
        kinds = ["reg", "unreg", "ptype", "atype", "fault", "open"] + ["obj"] * bool(opens)
        kind = draw(st.sampled_from(kinds))
        op: Op
        if kind == "reg":
            op = Register(draw(name_or_null), draw(u32), draw(u32),
                          draw(st.one_of(st.none(), handler_opts())))
        elif kind == "unreg":
            refs = st.builds(HandleRef, st.integers(0, registers - 1)) if registers else c_int
            op = Unregister(draw(st.one_of(c_int, refs)))
        elif kind == "ptype":
            op = ProgTypeByName(draw(name_or_null))
        elif kind == "atype":
            op = AttachTypeByName(draw(name_or_null))
        elif kind == "fault":
            op = Fault(draw(st.sampled_from(FAULT_KINDS)), draw(name_or_null))
        elif kind == "open":
            op = Open(draw(st.one_of(specs, st.binary(max_size=24))))
        else:
            ref = ObjRef(draw(st.integers(0, opens - 1)))
            op = draw(st.one_of(
                st.builds(ProgInfo, st.just(ref), c_int),
                st.builds(SetType, st.just(ref), c_int, u32),
                st.builds(SetAutoload, st.just(ref), c_int, st.booleans()),
                st.builds(Load, st.just(ref)),
                st.builds(Attach, st.just(ref), c_int),
                st.builds(Close, st.just(ref))))
        calls = st.lists(st.builds(
            CallbackCall, st.sampled_from(["prog_setup_fn", "prog_prepare_load_fn",
                                           "prog_attach_fn"]),
            st.integers(0, registers - 1), no_nul, no_nul, longs, c_int), max_size=2
        ).map(tuple) if registers else st.just(())
        answer = draw(st.one_of(st.none(), st.builds(Answer, c_int, out_values(op), calls)))
        log = tuple(draw(st.lists(st.text(max_size=8), max_size=2)))
        records.append(Record(op, answer, log))
        registers += isinstance(op, Register)
        opens += isinstance(op, Open)
    return records


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(["1.1.2", "1.7.0"]), st.booleans())
def test_lifecycle_sequences_round_trip_with_the_oracles_answers(
    seed: int, version: str, bpf: bool
) -> None:
    """lifecycle_gen sequences (every lifecycle op kind) with real answers survive a file."""
    ops = LifecycleGenerator(seed).sequence()
    records = records_of(ops, Oracle(version, bpf=bpf).run(ops))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_trace(Path(tmp) / "t.jsonl", HEADER, records)
        assert read_trace(path).records == tuple(records)
        for line in path.read_text().splitlines()[1:]:
            assert schema_error("record", json.loads(line)) is None


def test_lifecycle_generator_covers_every_lifecycle_kind() -> None:
    ops = [op for seed in range(20) for op in LifecycleGenerator(seed).sequence()]
    kinds = {type(op) for op in ops}
    assert {Open, ProgInfo, SetType, SetAutoload, Load, Attach, Close} <= kinds
    assert any(isinstance(op, Open) and isinstance(op.obj, bytes) for op in ops)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(op_sequences())
def test_round_trip_property(records: list[Record]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_trace(Path(tmp) / "t.jsonl", HEADER, records)
        assert read_trace(path).records == tuple(records)


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _leaves(value, (*path, i))


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=False),
    st.sampled_from([0, 1, -1, 40, 2**32, 2**31, -(2**31) - 1, 2**64, 1.0, 2.5, "h0", "h01",
                     "-EINVAL", "-EFOO", "abc", "a\n", "\x01", "", {"hex": "00"},
                     {"hex": "0"}, {"hex": "AB"}, {"hex": "6100"}, {}, [], [None],
                     "register", "unregister", "fault", "null_out", {"ret": 0},
                     "obj0", "obj01", "obj", "open", "prog_info", "prog_setup_fn",
                     {"hex": ""}, {"programs": [], "license": None},
                     {"section": "a", "name": "", "insns": {"hex": "00" * 8}},
                     [None] * 5, ["a", "b", 1, 2, 0], ["a", None, None, None, None],
                     {"callback": "prog_attach_fn", "registration": "h0", "program": "p",
                      "section": "s", "cookie": 0, "ret": 0}]),
    st.text(max_size=4),
).map(copy.deepcopy)  # sampled dicts/lists are shared objects: never mutate the originals


@st.composite
def mutated_records(draw: st.DrawFn) -> Any:
    records = draw(op_sequences().filter(bool))
    index = draw(st.integers(0, len(records) - 1))
    kind = type(records[index].op)
    handle = sum(1 for r in records[:index] if type(r.op) is kind)
    obj = encode_record(records[index], handle if kind in (Register, Open) else None)
    for _ in range(draw(st.integers(0, 2))):
        paths = list(_leaves(obj))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not path:
            if action == "replace":
                obj = draw(json_values)
            continue
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "delete":
            parent.pop(path[-1])
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["x", "handle", "answer", "log", "hex", "tail", "calls",
                                         "programs", "obj"]))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return obj


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records())
def test_hand_check_accepts_exactly_what_the_schema_accepts(obj: Any) -> None:
    obj = json.loads(json.dumps(obj))  # what a reader sees: JSON types only
    hand = check_record(copy.deepcopy(obj))
    schema = schema_error("record", obj)
    assert (hand is None) == (schema is None), (hand, schema)


# ---------------------------------------------------------------------------
# bad input: one line, file and line number


def assert_trace_error(path: Path, *fragments: str) -> str:
    with pytest.raises(TraceError) as info:
        read_trace(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message
    return message


GOOD = json.dumps(encode_record(Record(ProgTypeByName(b"xdp"), Answer(0, (6, 0)))))
REG0 = json.dumps(encode_record(Record(Register(b"a", 1, 0)), 0))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "nope.jsonl")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("")
    assert_trace_error(path, "empty file")


@pytest.mark.parametrize("last", [GOOD, GOOD[:-7]])
def test_truncated_last_line(tmp_path: Path, last: str) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(), GOOD, last], final_newline=False)
    assert_trace_error(path, "line 3:", "truncated last line")


def test_not_json(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(), GOOD, "{nope", GOOD])
    assert_trace_error(path, "line 3:", "not JSON")


def test_extra_data_after_the_object_is_not_json(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(), GOOD + " {}"])
    assert_trace_error(path, "line 2:", "not JSON")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(header_line().encode() + b"\n" + b'{"op": "\xff"}\n')
    assert_trace_error(path, "line 2:", "not UTF-8")


def test_blank_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(), GOOD, "", GOOD])
    assert_trace_error(path, "line 3:", "empty line")


def test_wrong_format_name(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(format="something/else"), GOOD])
    assert_trace_error(path, "line 1:", "not a libbpf-sec-oracle trace")


def test_future_format_version(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(format_version=2), GOOD])
    assert_trace_error(path, "line 1:",
                       "written by a newer libbpf-sec-oracle: format_version 2 > 1")


def test_header_schema_violation(tmp_path: Path) -> None:
    info = {"version": "1.7.0", "variant": "tsan", "so_sha256": None, "path": None}
    path = write_lines(tmp_path / "t.jsonl", [header_line(libbpf=info), GOOD])
    assert_trace_error(path, "line 1:", "schema violation", "$.libbpf.variant")


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ({"op": "register", "args": {"sec": "a", "prog_type": -1, "exp_attach_type": 0,
                                     "opts": None}, "handle": "h0"}, "$.args.prog_type"),
        ({"op": "prog_type_by_name", "args": {"name": "a"}, "answer": {"rc": 0, "out": [1]}},
         "$.answer.out"),
        ({"op": "prog_type_by_name", "args": {"name": "a\n"}}, "$.args.name"),
        ({"op": "prog_type_by_name", "args": {"name": {"hex": "6100"}}}, "$.args.name.hex"),
        ({"op": "unregister", "args": {"handler": "h-1"}}, "$.args.handler"),
        ({"op": "unregister", "args": {"handler": 1}, "answer": {"rc": "-EFOO", "out": []}},
         "$.answer.rc"),
        ({"op": "opne", "args": {}}, "$.op"),
        ({"op": "open", "args": {}, "handle": "obj0"}, "$.args"),
        ({"op": "open", "args": {"obj": {"hex": "0g"}}, "handle": "obj0"}, "$.args.obj.hex"),
        ({"op": "open", "args": {"obj": "7f454c46"}, "handle": "obj0"}, "$.args.obj"),
        ({"op": "open", "args": {"obj": {"programs": [{"section": "a", "name": "f"}],
                                         "license": None}}, "handle": "obj0"},
         "$.args.obj.programs[0]"),
        ({"op": "open", "args": {"obj": {"programs": [], "license": {"hex": "00"}}},
          "handle": "obj0"}, "$.args.obj.license.hex"),
        ({"op": "open", "args": {"obj": {"hex": ""}}, "handle": "h0"}, "$.handle"),
        ({"op": "open", "args": {"obj": {"hex": ""}}}, "$"),
        ({"op": "close", "args": {"obj": "obj0"}, "handle": "obj0"}, "$"),
        ({"op": "load", "args": {"obj": "obj-1"}}, "$.args.obj"),
        ({"op": "load", "args": {"obj": 0}}, "$.args.obj"),
        ({"op": "attach", "args": {"obj": "obj0", "prog": 2**31}}, "$.args.prog"),
        ({"op": "set_autoload", "args": {"obj": "obj0", "prog": 0, "autoload": 1}},
         "$.args.autoload"),
        ({"op": "set_type", "args": {"obj": "obj0", "prog": 0, "prog_type": -1}},
         "$.args.prog_type"),
        ({"op": "prog_info", "args": {"obj": "obj0", "prog": 0},
          "answer": {"rc": 0, "out": ["a", "b", "c", 0, 1]}}, "$.answer.out[2]"),
        ({"op": "prog_info", "args": {"obj": "obj0", "prog": 0},
          "answer": {"rc": 0, "out": [{"hex": "6100"}, "b", 1, 0, 1]}}, "$.answer.out[0].hex"),
        ({"op": "prog_info", "args": {"obj": "obj0", "prog": 0},
          "answer": {"rc": 0, "out": ["a", "b", 1, 0]}}, "$.answer.out"),
        ({"op": "open", "args": {"obj": {"hex": ""}}, "handle": "obj0",
          "answer": {"rc": 0, "out": ["6"]}}, "$.answer.out[0]"),
        ({"op": "load", "args": {"obj": "obj0"}, "answer": {"rc": 0, "out": [], "calls": [
            {"callback": "prog_run_fn", "registration": "h0", "program": "p", "section": "s",
             "cookie": 0, "ret": 0}]}}, "$.answer.calls[0].callback"),
        ({"op": "load", "args": {"obj": "obj0"}, "answer": {"rc": 0, "out": [], "calls": [
            {"callback": "prog_setup_fn", "registration": 0, "program": "p", "section": "s",
             "cookie": 0, "ret": 0}]}}, "$.answer.calls[0].registration"),
        ({"op": "load", "args": {"obj": "obj0"}, "answer": {"rc": 0, "out": [], "calls": [
            {"callback": "prog_setup_fn", "registration": "h0", "program": "p",
             "section": "s", "cookie": 2**63, "ret": 0}]}}, "$.answer.calls[0].cookie"),
        ({"op": "load", "args": {"obj": "obj0"}, "answer": {"rc": 0, "out": [], "calls": [
            {"callback": "prog_setup_fn", "registration": "h0", "program": "p",
             "section": "s", "cookie": 0}]}}, "$.answer.calls[0]"),
        ({"op": "load", "args": {"obj": "obj0"}, "answer": {"rc": 0, "out": [], "calls": {}}},
         "$.answer.calls"),
        ({"op": "register", "args": {"sec": "a", "prog_type": 1, "exp_attach_type": 0,
                                     "opts": {"sz": 40, "cookie": 0, "tail": ""}},
          "handle": "h0"}, "$.args.opts"),
        ({"op": "attach_type_by_name", "args": {"name": "a"}, "handle": "h0"}, "$"),
        ({"op": "fault", "args": {"kind": "oops", "name": None}}, "$.args.kind"),
        ({"op": "prog_type_by_name", "args": {"name": "a"}, "log": [1]}, "$.log[0]"),
    ],
)
def test_record_schema_violation(tmp_path: Path, record: dict[str, Any], where: str) -> None:
    assert schema_error("record", record) is not None  # jsonschema agrees it is bad
    path = write_lines(tmp_path / "t.jsonl", [header_line(), GOOD, json.dumps(record)])
    assert_trace_error(path, "line 3:", "schema violation", f"at {where}")


def test_register_handles_must_count_up(tmp_path: Path) -> None:
    reg5 = REG0.replace('"h0"', '"h5"')
    path = write_lines(tmp_path / "t.jsonl", [header_line(), REG0, reg5])
    assert_trace_error(path, "line 3:", "handle h5, expected h1")


def test_handle_ref_must_name_an_earlier_register(tmp_path: Path) -> None:
    unreg = json.dumps({"op": "unregister", "args": {"handler": "h1"}})
    path = write_lines(tmp_path / "t.jsonl", [header_line(), REG0, unreg])
    assert_trace_error(path, "line 3:", "h1 names a register record")


OPEN0 = json.dumps(encode_record(Record(Open(b"")), 0))


def test_open_handles_must_count_up(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [header_line(), REG0, OPEN0,
                                              OPEN0.replace('"obj0"', '"obj2"')])
    assert_trace_error(path, "line 4:", "open record has handle obj2, expected obj1 (the 2nd open)")


@pytest.mark.parametrize("op", ["load", "close"])
def test_obj_ref_must_name_an_earlier_open(tmp_path: Path, op: str) -> None:
    later = json.dumps({"op": op, "args": {"obj": "obj1"}})
    path = write_lines(tmp_path / "t.jsonl", [header_line(), OPEN0, later])
    assert_trace_error(path, "line 3:", "$.args.obj: obj1 names an open record that is not"
                       " before this line (1 so far)")


def test_obj_ref_before_any_open(tmp_path: Path) -> None:
    info = json.dumps({"op": "prog_info", "args": {"obj": "obj0", "prog": 0}})
    path = write_lines(tmp_path / "t.jsonl", [header_line(), info, OPEN0])
    assert_trace_error(path, "line 2:", "obj0 names an open record")


def test_call_registration_must_name_an_earlier_register(tmp_path: Path) -> None:
    call = CallbackCall("prog_setup_fn", 1, b"prog0", b"a", 0, 0)
    opened = encode_record(Record(Open(ObjectSpec((Program(b"a"),))), Answer(0, (1,), (call,))),
                           0)
    path = write_lines(tmp_path / "t.jsonl", [header_line(), REG0, json.dumps(opened)])
    assert_trace_error(path, "line 3:", "$.answer.calls[0].registration: h1 names a register"
                       " record that is not before this line (1 so far)")


def test_open_of_a_spec_bpfelf_refuses(tmp_path: Path) -> None:
    record = encode_record(Record(Open(ObjectSpec((Program(b"a", b"f"), Program(b"b", b"f"))))),
                           0)
    assert schema_error("record", record) is None  # a rule beyond the schema
    path = write_lines(tmp_path / "t.jsonl", [header_line(), json.dumps(record)])
    assert_trace_error(path, "line 2:", "$.args.obj: not an object oracle.bpfelf can build",
                       "duplicate program name")


def test_opts_sz_larger_than_the_bytes_given(tmp_path: Path) -> None:
    rec = json.loads(json.dumps(encode_record(Record(Register(b"a", 1, 0, HandlerOpts())), 0)))
    rec["args"]["opts"]["sz"] = 41
    assert schema_error("record", rec) is None  # a rule beyond the schema
    path = write_lines(tmp_path / "t.jsonl", [header_line(), json.dumps(rec)])
    assert_trace_error(path, "line 2:", "opts.sz 41")


def test_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "t.jsonl"
    write_trace(target, HEADER, [Record(ProgTypeByName(b"a"))])
    before = target.read_bytes()

    def records() -> Iterator[Record]:
        yield Record(ProgTypeByName(b"b"))
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_trace(target, HEADER, records())
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


# ---------------------------------------------------------------------------
# replay on the oracle


def divergence_traces(directory: Path, version: str = "1.7.0", *,
                      libbpfs: bool = False) -> list[Path]:
    """One trace per docs/divergences.md case, answers from the oracle itself or
    (``libbpfs``) the case's own, libbpf's (they differ for ``MODEL_ANSWERS`` cases)."""
    paths = []
    for case_id, ops, documented in CASES:
        answers = documented if libbpfs else Oracle(version).run(ops)
        paths.append(write_trace(directory / f"{case_id}.jsonl",
                                 TraceHeader(LibbpfInfo(version)), records_of(ops, answers)))
    return paths


def test_divergence_cases_replay_conforms(tmp_path: Path) -> None:
    result = replay(divergence_traces(tmp_path))
    assert [t.status for t in result.traces] == ["conforms"] * len(CASES)
    assert sum(t.checked for t in result.traces) == sum(len(ops) for _, ops, _ in CASES)
    assert result.exit_code == 0


def test_recorded_answers_equal_the_documented_ones(tmp_path: Path) -> None:
    for path, (case_id, _, answers) in zip(divergence_traces(tmp_path), CASES, strict=True):
        assert [r.answer for r in read_trace(path).records] == expected(
            case_id, answers, Oracle("1.7.0").release)


def test_libbpfs_answers_to_d13_d14_diverge_on_the_oracle(tmp_path: Path) -> None:
    """The spec-modelled divergences, read back from traces: the callback calls differ."""
    paths = divergence_traces(tmp_path, libbpfs=True)
    result = replay(paths)
    diverging = {Path(t.path).stem for t in result.traces if t.status == "diverges"}
    assert diverging == {case_id for case_id, _, _ in LIFECYCLE_CASES} == set(MODEL_ANSWERS)
    d13 = next(t for t in result.traces if t.path.endswith("D13.jsonl"))
    assert [d.index for d in d13.divergences] == [3, 4]
    assert describe(d13.divergences[0]) == (
        'op 3 (line 5) load {"obj":"obj0"}: callback calls expected 0, got 1;'
        ' call 0 expected none, got prog_prepare_load_fn of h0 on "prog0" (SEC "unclaimed")'
        " cookie 10 returned 0")


def scenario_trace(directory: Path, *, bpf: bool = True, version: str = "1.1.2") -> Path:
    """libbpf's selftest custom_sec_handlers as a trace, with the oracle's answers."""
    from tests.lifecycle.test_custom_sec_handlers import scenario

    ops = scenario(load=True)
    header = TraceHeader(LibbpfInfo(version, "system"), origin="hand")
    return write_trace(directory / f"scenario-{bpf}.jsonl", header,
                       records_of(ops, Oracle(version, bpf=bpf).run(ops)))


def test_lifecycle_trace_replay_conforms(tmp_path: Path) -> None:
    (trace,) = replay([scenario_trace(tmp_path)]).traces
    assert trace.status == "conforms", text_report(trace)
    assert trace.checked == trace.ops == 24


def test_a_trace_recorded_without_bpf_needs_no_bpf(tmp_path: Path) -> None:
    path = scenario_trace(tmp_path, bpf=False)
    assert replay([path], bpf=False).exit_code == 0
    (trace,) = replay([path]).traces
    assert trace.status == "diverges"
    assert describe(trace.divergences[0]).startswith(
        'op 14 (line 16) load {"obj":"obj0"}: rc expected -ENOSYS (-38), got 0;'
        " callback calls expected 0, got 3;")


def test_tampered_lifecycle_answers_are_reported(tmp_path: Path) -> None:
    records = list(read_trace(scenario_trace(tmp_path)).records)
    opened, info = records[5].answer, records[8].answer
    assert opened is not None and info is not None
    wrong_call = dataclasses.replace(opened.calls[1], cookie=99)
    records[5] = Record(records[5].op, Answer(0, (6,), (opened.calls[0], wrong_call,
                                                       *opened.calls[2:])))
    records[8] = Record(records[8].op, Answer(0, (b"custom9", *info.out[1:])))
    path = write_trace(tmp_path / "tampered.jsonl", HEADER, records)
    (trace,) = replay([path], version="1.1.2").traces
    assert [describe(d) for d in trace.divergences] == [
        "op 5 (line 7) " + op_text(records[5].op) + ': call 1 expected prog_setup_fn of h1 on'
        ' "abc2" (SEC "abc/whatever") cookie 99 returned 0, got prog_setup_fn of h1 on "abc2"'
        ' (SEC "abc/whatever") cookie 2 returned 0',
        'op 8 (line 10) prog_info {"obj":"obj0","prog":2}: name expected "custom9",'
        ' got "custom1"']


def test_cli_no_bpf_and_json_of_a_lifecycle_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scenario_trace(tmp_path, bpf=False)
    code, _ = run_cli(["replay", "--no-bpf", str(path)], capsys)
    assert code == 0
    code, out = run_cli(["replay", "--json", str(path)], capsys)
    assert code == 1
    (obj,) = [json.loads(line) for line in out.splitlines()]
    first = obj["divergences"][0]
    assert first["expected"] == {"rc": -38, "out": []}
    assert first["actual"]["calls"][0]["registration"] == "h1"


def tampered(directory: Path) -> Path:
    ops = [Register(b"abc", 2, 0), ProgTypeByName(b"abc/x"), ProgTypeByName(b"abc")]
    answers = [Answer(1), Answer(0, (2, 0)), Answer(0, (2, 0))]  # op 1 really is -ESRCH
    return write_trace(directory / "tampered.jsonl", HEADER, records_of(ops, answers))


def test_tampered_answer_is_reported(tmp_path: Path) -> None:
    result = replay([tampered(tmp_path)])
    (trace,) = result.traces
    assert result.exit_code == 1 and trace.status == "diverges"
    assert trace.divergence_count == 1
    (d,) = trace.divergences
    assert (d.index, record_line(d.index)) == (1, 3)
    assert describe(d) == (
        'op 1 (line 3) prog_type_by_name {"name":"abc/x"}: rc expected 0, got -ESRCH (-3);'
        " prog_type expected 2 (BPF_PROG_TYPE_KPROBE), got untouched; expected_attach_type"
        " expected 0 (BPF_CGROUP_INET_INGRESS), got untouched")


def test_ops_a_dead_libbpf_never_ran_are_no_divergences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only answered ops are compared; the crash (op and line) says where the rest stopped."""
    from oracle import replay as replay_module
    from oracle.libbpf.results import OpResult
    from oracle.libbpf.worker import BatchResult, CrashEvent

    path = tampered(tmp_path)
    batches: list[BatchResult] = [
        BatchResult((OpResult(Answer(1)), OpResult(Answer(-errno.ESRCH, (None, None))))),
        BatchResult(crash=CrashEvent("crash", 11, None, "SEGV", None, (), 0, (), "")),
    ]

    class DeadWorker:
        def reset(self) -> None:
            pass

        def run(self, ops: list[Op]) -> BatchResult:
            return batches.pop(0)

    class Target:
        path = Path("/libbpf.so")

    monkeypatch.setattr(replay_module, "BATCH", 2)
    trace = replay_module._replay_live(DeadWorker(), str(path), Target())
    assert (trace.status, trace.ops, trace.checked, trace.divergence_count) == (
        "diverges", 2, 2, 1)
    assert trace.crash == "libbpf crash on op 2 (line 4): SEGV"
    assert [describe(d) for d in trace.divergences] == [
        'op 1 (line 3) prog_type_by_name {"name":"abc/x"}: rc expected 0, got -ESRCH (-3);'
        " prog_type expected 2 (BPF_PROG_TYPE_KPROBE), got untouched; expected_attach_type"
        " expected 0 (BPF_CGROUP_INET_INGRESS), got untouched"]
    assert [d["line"] for d in trace.to_json()["divergences"]] == [3]


def test_version_override(tmp_path: Path) -> None:
    (trace,) = replay([tampered(tmp_path)], version="1.1.2").traces
    assert trace.target == "oracle 1.1.2"


def test_unknown_release_is_bad_input(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", TraceHeader(LibbpfInfo("0.9.9")), [])
    (trace,) = replay([path]).traces
    assert trace.status == "error" and "0.9.9" in (trace.error or "")


def test_fault_op_cannot_run_on_the_oracle(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", HEADER, [Record(Fault("abort"))])
    (trace,) = replay([path]).traces
    assert trace.status == "error" and "line 2: op 0" in (trace.error or "")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.handler(args)
    return code, capsys.readouterr().out


def test_cli_reports_every_trace_even_with_a_corrupt_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = divergence_traces(tmp_path)[:2]
    corrupt = write_lines(tmp_path / "corrupt.jsonl", [header_line(), "{"])
    code, out = run_cli(["replay", str(good[0]), str(corrupt), str(tampered(tmp_path)),
                         str(good[1])], capsys)
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"PASS {good[0]}")
    assert lines[1].startswith(f"ERROR {corrupt}: line 2: not JSON")
    assert lines[2].startswith("FAIL ") and "1 of 3 answers differ" in lines[2]
    assert lines[-1].startswith(f"PASS {good[1]}")


def test_cli_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["replay", "--json", str(tampered(tmp_path))], capsys)
    assert code == 1
    (obj,) = [json.loads(line) for line in out.splitlines()]
    assert obj["status"] == "diverges" and obj["divergences"][0]["line"] == 3
    code, _ = run_cli(["replay", *map(str, divergence_traces(tmp_path))], capsys)
    assert code == 0
    code, out = run_cli(["replay", str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2 and out.startswith("ERROR ")


def test_exit_code_precedence() -> None:
    ok = TraceResult("a", "oracle")
    bad = TraceResult("b", "oracle", divergence_count=1)
    err = TraceResult("c", "oracle", error="c: line 1: broken")
    assert ReplayResult((ok,)).exit_code == 0
    assert ReplayResult((ok, bad)).exit_code == 1
    assert ReplayResult((err, bad, ok)).exit_code == 2
    assert text_report(err) == "ERROR c: line 1: broken"


def test_bench_replay_runs() -> None:
    assert bench_replay(2_000, rounds=1) > 0
    assert bench_replay(2_000, rounds=1, lifecycle=True) > 0
    assert len(lifecycle_demo_ops(500)) == 500


def test_bench_replay_command(capsys: pytest.CaptureFixture[str]) -> None:
    from oracle.cli import main

    code = main(["bench", "replay", "--ops", "2000", "--rounds", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["bench"] == "replay" and result["ops"] == 2000
    assert result["registry_ops_per_s"] > 0 and result["lifecycle_ops_per_s"] > 0


@pytest.mark.libbpf
def test_live_replay_on_system_libbpf(tmp_path: Path) -> None:
    pytest.importorskip("cffi")
    try:
        from oracle.replay import resolve_target

        resolve_target("system")
    except Exception as exc:
        pytest.skip(f"no system libbpf: {exc}")
    from oracle.libbpf.lifecycle import bpf_permitted

    lifecycle = {case_id for case_id, _, _ in LIFECYCLE_CASES}
    cases = divergence_traces(tmp_path, "1.1.2", libbpfs=True)
    if not bpf_permitted():  # their Load and Attach would answer NO_BPF
        cases = [p for p in cases if p.stem not in lifecycle]
    result = replay([*cases, tampered(tmp_path)], libbpf="system")
    assert [t.status for t in result.traces] == ["conforms"] * len(cases) + ["diverges"]
    assert result.traces[-1].divergences[0].index == 1


@pytest.mark.libbpf
def test_recorded_lifecycle_trace_replays_live_and_on_the_oracle(tmp_path: Path) -> None:
    """custom_sec_handlers recorded on the system libbpf (worker), then replayed on both."""
    pytest.importorskip("cffi")
    from oracle.errors import LibbpfError
    from oracle.libbpf.lifecycle import bpf_permitted
    from oracle.libbpf.worker import Worker
    from oracle.replay import resolve_target
    from tests.lifecycle.test_custom_sec_handlers import scenario

    try:
        target = resolve_target("system")
    except LibbpfError as exc:
        pytest.skip(f"no system libbpf: {exc}")
    bpf = bpf_permitted()
    ops = scenario(load=True)
    with Worker(target) as worker:
        result = worker.run(ops)
    assert result.crash is None
    records = [Record(op, r.answer, tuple(line.text for line in r.log))
               for op, r in zip(ops, result.results, strict=True)]
    path = write_trace(tmp_path / "recorded.jsonl", TraceHeader(
        LibbpfInfo("1.1.2", "system", path=str(target.path)), origin="record"), records)
    live = replay([path], libbpf="system")
    assert live.exit_code == 0, text_report(live.traces[0])
    model = replay([path], bpf=bpf)
    assert model.exit_code == 0, text_report(model.traces[0])
    assert model.traces[0].checked == len(ops)
