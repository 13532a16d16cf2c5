"""Comparing libbpf's answers with the oracle's, and the signatures of what differs.

Rules:
- Answers are compared op by op, in order; the first difference ends the case
  (later answers depend on state that has already diverged).
- Findings name what differs by the names of ``oracle.ops.OP_SPECS``: the op
  kind, then ``rc``, an out-parameter's ``OutField.name`` (``programs``,
  ``prog_type``, ``autoload``...) or ``calls``.  Nothing here names a field
  by its position.
- A signature names the kind of a finding, not its instance, so findings
  deduplicate: ``divergence:<op>:<field>:<expected class>-><actual class>``.
  ``rc`` classes: ``ok`` (0), ``id`` (> 0), an errno name (< 0).  An
  out-parameter's classes depend on its ``OutField.kind`` (``out_class``):
  ``untouched`` (None) for any kind; a ``count`` is ``0`` or ``n``, and two
  different ``n`` read ``n->fewer`` / ``n->more``; a ``flag`` is its value
  (``0``, ``1``); an enum (``prog_type``, ``attach_type``) is ``0`` or
  ``set`` and a ``string`` ``empty`` or ``set``, two different ``set`` values
  reading ``set->other``.  Enum values are never in a signature: generated
  handlers register arbitrary types, and each pair would be a finding of its
  own.  ``calls``: their counts or the first differing field
  (``calls_class``).  ``out`` (the number of out-parameters) means a harness bug.
- ``Divergence`` is the one difference type (also ``oracle.replay``):
  ``describe()`` is one sentence on the field the signature names, what
  libbpf did and what the model expected; ``facts()`` lists every differing
  fact.  Only these texts show values (enums with their ``bpf.h`` names).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from itertools import zip_longest

from oracle.ops import OP_NAMES, OP_SPECS, Answer, CallbackCall, Op, OutField, OutValue
from oracle.tables import Table, known_versions, load_table
from oracle.traces import encode_rc, rc_text

#: the fields of a ``CallbackCall`` in the order they are compared
CALL_FIELDS = ("callback", "registration", "program", "section", "cookie", "ret")


def errno_name(rc: int) -> str:
    """``-22`` -> ``-EINVAL`` (the names traces write, ``oracle.traces.encode_rc``);
    other values as digits."""
    return str(encode_rc(rc))


def rc_class(rc: int) -> str:
    if rc == 0:
        return "ok"
    if rc > 0:
        return "id"
    return errno_name(rc)


def value_class(field: OutField, value: OutValue) -> str:
    """The class of one out-parameter's value (module rules)."""
    if value is None:
        return "untouched"
    if field.kind == "flag" and value in (0, 1):
        return str(value)
    if isinstance(value, bytes):
        return "empty" if not value else "set"
    if value == 0:
        return "0"
    return "n" if field.kind == "count" else "set"


def out_class(field: OutField, expected: OutValue, actual: OutValue) -> str:
    """``<expected class>-><actual class>`` of an out-parameter whose values differ."""
    want, got = value_class(field, expected), value_class(field, actual)
    if want == got:  # two different values of one class
        if field.kind == "count" and isinstance(expected, int) and isinstance(actual, int):
            got = "fewer" if actual < expected else "more"
        else:
            got = "other"
    return f"{want}->{got}"


def out_fields(op: Op, n: int) -> tuple[OutField, ...]:
    """The ``OutField`` s of ``op``'s answer, for an ``out`` of ``n`` values (positions
    past the table's, in a malformed answer, are named ``out<i>``)."""
    fields = OP_SPECS[type(op)].out
    return fields + tuple(OutField(f"out{i}", "count") for i in range(len(fields), n))


@functools.cache
def _newest_table() -> Table:
    """For enum names: the newest shipped table (enum values never change meaning)."""
    return load_table(known_versions()[-1])


def value_text(field: OutField, value: OutValue) -> str:
    """An out-parameter's value for people: ``untouched``, ``"abc"``, ``2``, or an
    enum with its name, ``2 (BPF_PROG_TYPE_KPROBE)``."""
    if value is None:
        return "untouched"
    if isinstance(value, bytes):
        return json.dumps(value.decode("latin-1"))
    table = _newest_table()
    name = (table.prog_type_name(value) if field.kind == "prog_type" else
            table.attach_type_name(value) if field.kind == "attach_type" else None)
    return str(value) if name is None else f"{value} ({name})"


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first op whose answers differ."""

    index: int
    op: Op
    expected: Answer
    actual: Answer

    def _out_index(self) -> int | None:
        """The first out-parameter whose values differ, or None."""
        for i, (want, got) in enumerate(zip(self.expected.out, self.actual.out, strict=False)):
            if want != got:
                return i
        return None

    @property
    def field(self) -> str:
        """What the signature names: ``rc``, an out-parameter's name, ``out``, ``calls``."""
        if self.expected.rc != self.actual.rc:
            return "rc"
        i = self._out_index()
        if i is not None:
            return out_fields(self.op, i + 1)[i].name
        if self.expected.out != self.actual.out:
            return "out"
        return "calls"

    @property
    def signature(self) -> str:
        expected, actual = self.expected, self.actual
        field = self.field
        if field == "rc":
            classes = f"{rc_class(expected.rc)}->{rc_class(actual.rc)}"
        elif field == "calls":
            classes = calls_class(expected.calls, actual.calls)
        elif field == "out":
            classes = f"{len(expected.out)}values->{len(actual.out)}values"
        else:
            i = self._out_index()
            assert i is not None
            classes = out_class(out_fields(self.op, i + 1)[i], expected.out[i], actual.out[i])
        return f"divergence:{OP_NAMES[type(self.op)]}:{field}:{classes}"

    def describe(self) -> str:
        """``op 0 open: libbpf found 0 programs, the model expected 1``: the field the
        signature names, what libbpf did, what the model expected."""
        expected, actual = self.expected, self.actual
        field = self.field
        if field == "rc":
            what = (f"libbpf returned {errno_name(actual.rc)},"
                    f" the model expected {errno_name(expected.rc)}")
        elif field == "calls":
            what = _calls_sentence(expected.calls, actual.calls)
        elif field == "out":
            what = (f"libbpf gave {len(actual.out)} out-parameters,"
                    f" the model expected {len(expected.out)}")
        else:
            i = self._out_index()
            assert i is not None
            what = _out_sentence(out_fields(self.op, i + 1)[i], expected.out[i], actual.out[i])
        return f"op {self.index} {OP_NAMES[type(self.op)]}: {what}"

    def facts(self) -> list[str]:
        """One ``"<what> expected X, got Y"`` per differing fact: rc, each out-parameter
        (by name), the number of out-parameters and of callback calls, each call."""
        expected, actual = self.expected, self.actual
        facts = []
        if expected.rc != actual.rc:
            facts.append(f"rc expected {rc_text(expected.rc)}, got {rc_text(actual.rc)}")
        fields = out_fields(self.op, max(len(expected.out), len(actual.out)))
        for f, e, a in zip(fields, expected.out, actual.out, strict=False):
            if e != a:
                facts.append(f"{f.name} expected {value_text(f, e)}, got {value_text(f, a)}")
        if len(expected.out) != len(actual.out):
            facts.append(f"out expected {len(expected.out)} values, got {len(actual.out)}")
        if len(expected.calls) != len(actual.calls):
            facts.append(f"callback calls expected {len(expected.calls)},"
                         f" got {len(actual.calls)}")
        for i in range(max(len(expected.calls), len(actual.calls))):
            want = expected.calls[i] if i < len(expected.calls) else None
            got = actual.calls[i] if i < len(actual.calls) else None
            if want != got:
                facts.append(f"call {i} expected {_call_text(want)}, got {_call_text(got)}")
        return facts


def _out_sentence(field: OutField, expected: OutValue, actual: OutValue) -> str:
    want, got = value_text(field, expected), value_text(field, actual)
    if actual is None:
        return f"libbpf left {field.name} untouched, the model expected {want}"
    if expected is None:
        return f"libbpf set {field.name} to {got}, the model expected it untouched"
    if field.kind == "count":
        return f"libbpf found {got} {field.name}, the model expected {want}"
    return f"libbpf gave {field.name} {got}, the model expected {want}"


def _calls_sentence(expected: tuple[CallbackCall, ...], actual: tuple[CallbackCall, ...]) -> str:
    if len(expected) != len(actual):
        i = next(i for i, (want, got) in enumerate(zip_longest(expected, actual))
                 if want != got)
        want, got = (_call_text(c[i] if i < len(c) else None) for c in (expected, actual))
        return (f"libbpf made {_n_calls(len(actual))}, the model expected"
                f" {_n_calls(len(expected))}; call {i}: libbpf's {got}, the model's {want}")
    found = first_call_difference(expected, actual)
    if found is None:
        return "the callback calls are the same"
    i, name = found
    want, got = (_call_field_text(name, getattr(c[i], name)) for c in (expected, actual))
    return (f"libbpf's callback call {i} ({actual[i].callback}) had {name} {got},"
            f" the model expected {want}")


def _n_calls(n: int) -> str:
    return f"{n or 'no'} callback call{'' if n == 1 else 's'}"


def _call_field_text(name: str, value: object) -> str:
    if name == "registration":
        return f"h{value}"
    if isinstance(value, bytes):
        return json.dumps(value.decode("latin-1"))
    return str(value)


def _call_text(call: CallbackCall | None) -> str:
    """``prog_setup_fn of h0 on "abc1" (SEC "abc") cookie 1 returned 0``, ``none``."""
    if call is None:
        return "none"
    return (f"{call.callback} of h{call.registration} on"
            f" {_call_field_text('program', call.program)}"
            f" (SEC {_call_field_text('section', call.section)}) cookie {call.cookie}"
            f" returned {call.ret}")


def first_call_difference(expected: tuple[CallbackCall, ...],
                          actual: tuple[CallbackCall, ...]) -> tuple[int, str] | None:
    """The first call (index) and field (``CALL_FIELDS``) where two lists of calls of one
    length differ, or None."""
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        for name in CALL_FIELDS:
            if getattr(want, name) != getattr(got, name):
                return i, name
    return None


def calls_class(expected: tuple[CallbackCall, ...], actual: tuple[CallbackCall, ...]) -> str:
    """How callback calls differ, by kind: ``<n expected>-><n actual>`` calls, or the first
    differing field (``callback``, ``registration``, ``program``, ``cookie``...)."""
    if len(expected) != len(actual):
        return f"{len(expected)}calls->{len(actual)}calls"
    found = first_call_difference(expected, actual)
    return "same" if found is None else f"{found[1]}-differs"


def show(answer: Answer, op: Op) -> str:
    """An answer of ``op`` for people: ``0 (prog_type 2 (BPF_PROG_TYPE_KPROBE),
    expected_attach_type 0 (BPF_CGROUP_INET_INGRESS))``, then its calls."""
    fields = out_fields(op, len(answer.out))
    outs = ", ".join(f"{f.name} {value_text(f, v)}" for f, v in zip(fields, answer.out,
                                                                     strict=False))
    text = errno_name(answer.rc) + (f" ({outs})" if outs else "")
    if answer.calls:
        text += " calls [" + ", ".join(
            f"{c.callback}(h{c.registration}, {c.program.decode(errors='replace')},"
            f" cookie {c.cookie}) = {c.ret}" for c in answer.calls) + "]"
    return text


def first_divergence(
    ops: list[Op], expected: list[Answer], actual: list[Answer], start: int = 0
) -> Divergence | None:
    """The first op from ``start`` on whose answers differ, over the ops both sides
    answered (its ``index`` counts from the first op, not from ``start``)."""
    for i in range(start, min(len(expected), len(actual))):
        if expected[i] != actual[i]:
            return Divergence(i, ops[i], expected[i], actual[i])
    return None


