"""Findings name what differs: the op-kind table (oracle.ops.OP_SPECS) and
the signatures, sentences and facts of oracle.campaign.compare built from it."""

from __future__ import annotations

import dataclasses
import errno
import typing

import pytest

from oracle.campaign.compare import Divergence, out_class, show
from oracle.ops import (
    LIFECYCLE_OPS,
    OP_NAMES,
    OP_SPECS,
    OUT_ARITY,
    OUT_NAMES,
    Answer,
    AttachTypeByName,
    HandleRef,
    LifecycleOp,
    Load,
    ObjRef,
    Op,
    Open,
    OutField,
    ProgInfo,
    ProgTypeByName,
    Register,
)
from oracle.traces.codecs import NAME
from oracle.traces.kinds import OP_KINDS

INFO = ProgInfo(ObjRef(0), 2)
GOOD_INFO = Answer(0, (b"custom1", b"abc", 5, 0, 1))


def test_every_op_kind_is_in_the_table_once() -> None:
    assert set(OP_SPECS) == set(typing.get_args(Op))  # the union is flat at run time
    assert len(set(OP_NAMES.values())) == len(OP_NAMES)
    assert set(LIFECYCLE_OPS) == set(typing.get_args(LifecycleOp))


def test_arity_and_names_derive_from_the_table() -> None:
    assert OUT_NAMES[Open] == ("programs",)
    assert OUT_NAMES[ProgTypeByName] == ("prog_type", "expected_attach_type")
    assert OUT_NAMES[AttachTypeByName] == ("attach_type",)
    assert OUT_NAMES[ProgInfo] == ("name", "section_name", "prog_type", "expected_attach_type",
                                   "autoload")
    assert all(OUT_ARITY[k] == len(OUT_NAMES[k]) for k in OP_SPECS)
    for spec in OP_SPECS.values():
        assert len({f.name for f in spec.out}) == len(spec.out)


def test_traces_spell_the_table_the_same_way() -> None:
    """traces/kinds.py keeps its own codec table: its names and string outs agree."""
    for kind in OP_KINDS:
        spec = OP_SPECS[kind.cls]
        assert kind.name == spec.name
        assert [c is NAME for c in kind.out_codecs] == [f.kind == "string" for f in spec.out]


def test_refs_are_the_kinds_with_a_ref_field() -> None:
    for kind, spec in OP_SPECS.items():
        types = {f.type for f in dataclasses.fields(kind)}
        has_ref = any(ref.__name__ in str(t) for t in types for ref in (HandleRef, ObjRef))
        assert spec.refs == has_ref, kind


@pytest.mark.parametrize(("op", "expected", "actual", "signature", "sentence"), [
    (Open(b""), Answer(0, (1,)), Answer(0, (0,)), "divergence:open:programs:n->0",
     "op 0 open: libbpf found 0 programs, the model expected 1"),
    (Open(b""), Answer(0, (3,)), Answer(0, (2,)), "divergence:open:programs:n->fewer",
     "op 0 open: libbpf found 2 programs, the model expected 3"),
    (Open(b""), Answer(0, (1,)), Answer(0, (None,)), "divergence:open:programs:n->untouched",
     "op 0 open: libbpf left programs untouched, the model expected 1"),
    (ProgTypeByName(b"abc/x"), Answer(0, (77, 0)), Answer(0, (2, 0)),
     "divergence:prog_type_by_name:prog_type:set->other",
     "op 0 prog_type_by_name: libbpf gave prog_type 2 (BPF_PROG_TYPE_KPROBE), the model"
     " expected 77"),
    (ProgTypeByName(b"abc/x"), Answer(0, (77, None)), Answer(0, (77, 37)),
     "divergence:prog_type_by_name:expected_attach_type:untouched->set",
     "op 0 prog_type_by_name: libbpf set expected_attach_type to 37 (BPF_XDP), the model"
     " expected it untouched"),
    (ProgTypeByName(b"x"), Answer(-errno.ESRCH, (None, None)), Answer(0, (1, 0)),
     "divergence:prog_type_by_name:rc:-ESRCH->ok",
     "op 0 prog_type_by_name: libbpf returned 0, the model expected -ESRCH"),
    (INFO, GOOD_INFO, Answer(0, (b"custom9", b"abc", 5, 0, 1)),
     "divergence:prog_info:name:set->other",
     'op 0 prog_info: libbpf gave name "custom9", the model expected "custom1"'),
    (INFO, GOOD_INFO, Answer(0, (b"custom1", b"", 5, 0, 1)),
     "divergence:prog_info:section_name:set->empty",
     'op 0 prog_info: libbpf gave section_name "", the model expected "abc"'),
    (INFO, GOOD_INFO, Answer(0, (b"custom1", b"abc", 5, 0, 0)),
     "divergence:prog_info:autoload:1->0",
     "op 0 prog_info: libbpf gave autoload 0, the model expected 1"),
    (Register(b"a", 0, 0), Answer(-errno.EINVAL), Answer(2), "divergence:register:rc:-EINVAL->id",
     "op 0 register: libbpf returned 2, the model expected -EINVAL"),
])
def test_signature_and_sentence_name_the_field(op: Op, expected: Answer, actual: Answer,
                                              signature: str, sentence: str) -> None:
    d = Divergence(0, op, expected, actual)
    assert d.signature == signature
    assert d.describe() == sentence


def test_instance_values_stay_out_of_signatures() -> None:
    """Two cases of one kind of bug (other types, names, counts) share a signature."""
    same = [Divergence(0, ProgTypeByName(b"a"), Answer(0, (t, 0)), Answer(0, (2, 0)))
            for t in (6, 27, 1000)]
    same += [Divergence(0, ProgTypeByName(b"b"), Answer(0, (6, 0)), Answer(0, (t, 0)))
             for t in (2, 17)]
    assert {d.signature for d in same} == {"divergence:prog_type_by_name:prog_type:set->other"}
    more = [Divergence(0, Open(b""), Answer(0, (n,)), Answer(0, (n + k,)))
            for n in (1, 4) for k in (1, 3)]
    assert {d.signature for d in more} == {"divergence:open:programs:n->more"}


def test_out_class_by_kind() -> None:
    count, flag, enum, string = (OutField("c", "count"), OutField("f", "flag"),
                                 OutField("e", "prog_type"), OutField("s", "string"))
    assert out_class(count, 0, 2) == "0->n"
    assert out_class(count, 5, 2) == "n->fewer"
    assert out_class(flag, 0, 1) == "0->1"
    assert out_class(enum, 0, 6) == "0->set"
    assert out_class(enum, None, 0) == "untouched->0"
    assert out_class(string, b"a", None) == "set->untouched"


def test_facts_and_answers_name_every_field() -> None:
    d = Divergence(4, INFO, GOOD_INFO, Answer(0, (b"custom9", b"abc", 6, 0, 0)))
    assert d.facts() == ['name expected "custom1", got "custom9"',
                         "prog_type expected 5 (BPF_PROG_TYPE_TRACEPOINT),"
                         " got 6 (BPF_PROG_TYPE_XDP)",
                         "autoload expected 1, got 0"]
    assert show(Answer(0, (2, 0)), ProgTypeByName(b"a")) == (
        "0 (prog_type 2 (BPF_PROG_TYPE_KPROBE), expected_attach_type 0"
        " (BPF_CGROUP_INET_INGRESS))")
    assert show(Answer(-errno.EBADF), Load(ObjRef(0))) == "-EBADF"


def test_a_malformed_answer_still_reads() -> None:
    """More out values than the table has (a harness bug): named by position."""
    d = Divergence(0, Open(b""), Answer(0, (1, 2)), Answer(0, (1, 3)))
    assert d.signature == "divergence:open:out1:n->more"
    short = Divergence(0, Open(b""), Answer(0, (1,)), Answer(0, ()))
    assert short.signature == "divergence:open:out:1values->0values"
    assert short.describe() == "op 0 open: libbpf gave 0 out-parameters, the model expected 1"
