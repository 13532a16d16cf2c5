"""Comparing libbpf's answers with the oracle's, and the signatures of what differs.

Rules:
- Answers are compared op by op, in order; the first difference ends the case
  (later answers depend on state that has already diverged).
- A signature names the kind of a finding, not its instance, so findings
  deduplicate: ``divergence:<op>:<field>:<expected class>-><actual class>``
  where a field is ``rc``, ``out<N>`` or ``calls`` and a class is ``ok`` (0),
  ``id`` (> 0), an errno name (< 0), ``untouched`` or ``set`` (out-parameters),
  or for calls their counts or the first differing field (``calls_class``).
- ``Divergence`` is the one difference type (also ``oracle.replay``); ``facts()`` lists each.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

from oracle.ops import OP_NAMES, Answer, CallbackCall, Op, OutValue
from oracle.traces import encode_rc, rc_text


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


def out_class(value: int | bytes | None) -> str:
    return "untouched" if value is None else "set"


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first op whose answers differ."""

    index: int
    op: Op
    expected: Answer
    actual: Answer

    @property
    def field(self) -> str:
        if self.expected.rc != self.actual.rc:
            return "rc"
        for i, (want, got) in enumerate(zip(self.expected.out, self.actual.out, strict=False)):
            if want != got:
                return f"out{i}"
        if self.expected.out != self.actual.out:
            return "out"
        return "calls"

    @property
    def signature(self) -> str:
        field = self.field
        if field == "rc":
            classes = f"{rc_class(self.expected.rc)}->{rc_class(self.actual.rc)}"
        elif field == "calls":
            classes = calls_class(self.expected.calls, self.actual.calls)
        else:
            i = int(field[3:]) if field[3:] else 0
            want = self.expected.out[i] if i < len(self.expected.out) else None
            got = self.actual.out[i] if i < len(self.actual.out) else None
            classes = f"{out_class(want)}->{out_class(got)}"
        return f"divergence:{OP_NAMES[type(self.op)]}:{field}:{classes}"

    def describe(self) -> str:
        return (f"op {self.index} {OP_NAMES[type(self.op)]}: expected {show(self.expected)},"
                f" libbpf gave {show(self.actual)}")

    def facts(self) -> list[str]:
        """One ``"<what> expected X, got Y"`` per differing fact: rc, each out-parameter,
        the number of out-parameters and of callback calls, each callback call."""
        expected, actual = self.expected, self.actual
        facts = []
        if expected.rc != actual.rc:
            facts.append(f"rc expected {rc_text(expected.rc)}, got {rc_text(actual.rc)}")
        for i, (e, a) in enumerate(zip(expected.out, actual.out, strict=False)):
            if e != a:
                facts.append(f"out[{i}] expected {_out_text(e)}, got {_out_text(a)}")
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


def _out_text(value: OutValue) -> str:
    if value is None:
        return "untouched"
    if isinstance(value, bytes):
        return json.dumps(value.decode("latin-1"))
    return str(value)


def _call_text(call: CallbackCall | None) -> str:
    """``prog_setup_fn of h0 on "abc1" (SEC "abc") cookie 1 returned 0``, ``none``."""
    if call is None:
        return "none"
    return (f"{call.callback} of h{call.registration} on {_out_text(call.program)}"
            f" (SEC {_out_text(call.section)}) cookie {call.cookie} returned {call.ret}")


def calls_class(expected: tuple[CallbackCall, ...], actual: tuple[CallbackCall, ...]) -> str:
    """How callback calls differ, by kind: ``<n expected>-><n actual>`` calls, or the first
    differing field (``callback``, ``registration``, ``program``, ``cookie``...)."""
    if len(expected) != len(actual):
        return f"{len(expected)}calls->{len(actual)}calls"
    for want, got in zip(expected, actual, strict=True):
        for name in ("callback", "registration", "program", "section", "cookie", "ret"):
            if getattr(want, name) != getattr(got, name):
                return f"{name}-differs"
    return "same"


def show(answer: Answer) -> str:
    outs = ", ".join("untouched" if v is None else str(v) for v in answer.out)
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


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


