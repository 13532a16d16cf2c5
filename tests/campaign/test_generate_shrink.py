"""The case generator, the shrinker and signatures, on the oracle alone.

A deliberately broken oracle (a fake, used only to test the harness) stands in
for a buggy libbpf: cases that expose its bug must shrink to a few ops.
"""

from __future__ import annotations

import errno

from oracle import Oracle
from oracle.campaign.compare import Divergence, first_divergence
from oracle.campaign.generate import LONG_NAME, CaseGenerator
from oracle.campaign.known import without_new_known_causes
from oracle.campaign.shrink import drop_ops, shrink
from oracle.model import lookup
from oracle.model.versions import profile
from oracle.ops import (
    Answer,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)


def test_generator_is_deterministic_and_cases_are_valid() -> None:
    release = profile("1.7.0")
    first = [CaseGenerator(release, 7).case() for _ in range(3)]
    again = [CaseGenerator(release, 7).case() for _ in range(3)]
    assert first == again
    gen = CaseGenerator(release, 1)
    kinds: set[str] = set()
    for _ in range(300):
        ops = gen.case()
        answers = Oracle("1.7.0").run(ops)  # no domain error: every op is well-formed
        assert len(answers) == len(ops)
        kinds.update(type(op).__name__ for op in ops)
        kinds.update(f"rc{a.rc}" for a in answers if a.rc < 0)
    assert {"Register", "Unregister", "ProgTypeByName", "AttachTypeByName"} <= kinds
    for rc in (errno.EINVAL, errno.ESRCH, errno.ENOENT, errno.EBUSY):
        assert f"rc-{rc}" in kinds


def test_generated_names_stay_bounded() -> None:
    # repeating a name that was itself repeated grew without bound (megabyte names)
    gen = CaseGenerator(profile("1.7.0"), 3)
    lengths = [len(text) for _ in range(2000) for op in gen.case(24)
               for text in (getattr(op, "sec", None), getattr(op, "name", None))
               if isinstance(text, bytes)]
    assert max(lengths) <= LONG_NAME
    assert any(length > 300 for length in lengths)  # long names are still made


def test_drop_ops_removes_dependents_and_renumbers() -> None:
    ops: list[Op] = [Register(b"a", 0, 0), Register(b"b", 0, 0), Unregister(HandleRef(0)),
                     Unregister(HandleRef(1)), ProgTypeByName(b"b")]
    assert drop_ops(ops, {0}) == [Register(b"b", 0, 0), Unregister(HandleRef(0)),
                                  ProgTypeByName(b"b")]


class PlusIgnoresEmptyRest(Oracle):
    """A broken model: "abc+" does not match "abc/" (the kind of edit a bug makes)."""

    def apply(self, op: Op) -> Answer:
        if isinstance(op, ProgTypeByName) and op.name is not None and op.name.endswith(b"/"):
            found = lookup.find_sec_def(self.registry, self.release, op.name)
            sec = getattr(found, "sec", None)
            if isinstance(sec, bytes) and sec.endswith(b"+") and op.name == sec[:-1] + b"/":
                return Answer(-errno.ESRCH, (None, None))
        return super().apply(op)


def signature_of(ops: list[Op]) -> str | None:
    found = first_divergence(ops, Oracle("1.7.0").run(ops), PlusIgnoresEmptyRest("1.7.0").run(ops))
    return found.signature if found else None


def test_shrink_finds_a_minimal_case() -> None:
    noise: list[Op] = [Register(b"zzz/", 1, 2, HandlerOpts(cookie=9)), ProgTypeByName(b"zzz/q"),
                       Register(None, 3, 3), Unregister(HandleRef(1)), ProgTypeByName(b"x")]
    ops = [*noise, Register(b"custom+", 7, 0), *noise, ProgTypeByName(b"custom/"), *noise]
    signature = signature_of(ops)
    assert signature == "divergence:prog_type_by_name:rc:ok->-ESRCH"
    small = shrink(ops, signature, signature_of)
    assert signature_of(small) == signature
    assert len(small) == 2
    assert isinstance(small[0], Register) and small[0].opts is None and small[0].prog_type == 0


def test_generated_cases_expose_the_broken_model_and_shrink_small() -> None:
    gen = CaseGenerator(profile("1.7.0"), 3)
    found = 0
    for _ in range(3000):
        ops = gen.case()
        signature = signature_of(ops)
        if signature:
            small = shrink(ops, signature, signature_of)
            assert len(small) <= 5
            found += 1
            if found == 3:
                break
    assert found, "the generator never reached a '+' pattern with an empty rest"


def test_divergence_describes_itself() -> None:
    d = Divergence(3, ProgTypeByName(b"a"), Answer(0, (1, 0)), Answer(-errno.ESRCH, (None, None)))
    assert d.describe() == "op 3 prog_type_by_name: libbpf returned -ESRCH, the model expected 0"
    assert d.facts() == [
        "rc expected 0, got -ESRCH (-3)",
        "prog_type expected 1 (BPF_PROG_TYPE_SOCKET_FILTER), got untouched",
        "expected_attach_type expected 0 (BPF_CGROUP_INET_INGRESS), got untouched",
    ]


def test_divergence_in_callback_calls_has_its_own_signature() -> None:
    from oracle.ops import CallbackCall, Open

    call = CallbackCall("prog_setup_fn", 0, b"prog0", b"abc", 7, 0)
    spec_op = Open(b"")  # the op kind is all the signature needs
    more = Divergence(1, spec_op, Answer(0, (1,)), Answer(0, (1,), (call,)))
    assert more.signature == "divergence:open:calls:0calls->1calls"
    other = Divergence(1, spec_op, Answer(0, (1,), (call,)),
                       Answer(0, (1,), (CallbackCall("prog_setup_fn", 0, b"prog0", b"abc", 9, 0),)))
    assert other.signature == "divergence:open:calls:cookie-differs"
    assert more.describe() == (
        "op 1 open: libbpf made 1 callback call, the model expected no callback calls;"
        " call 0: libbpf's"
        ' prog_setup_fn of h0 on "prog0" (SEC "abc") cookie 7 returned 0, the model\'s none')
    assert other.describe() == ("op 1 open: libbpf's callback call 0 (prog_setup_fn) had"
                                " cookie 9, the model expected 7")


def test_shrinking_never_brings_in_a_known_bugs_cause() -> None:
    # every candidate "fails" alike; "" would be the simplest pattern, but it is KB1's
    # cause, which the case did not have: the shrinker must keep a non-empty pattern
    ops: list[Op] = [Register(b"abc", 2, 0), ProgTypeByName(b"abc")]

    def fails(candidate: list[Op]) -> str | None:
        return "sig" if any(isinstance(op, Register) for op in candidate) else None

    assert shrink(ops, "sig", fails) == [Register(b"", 0, 0)]  # unguarded: KB1's cause
    failing = without_new_known_causes("1.7.0", ops, fails)
    assert failing([Register(b"", 2, 0), ProgTypeByName(b"abc")]) is None
    assert failing([Register(b"a", 2, 0)]) == "sig"
    assert shrink(ops, "sig", failing) == [Register(b"a", 0, 0)]
    # a case that had the cause may keep it
    kept = without_new_known_causes("1.7.0", [Register(b"", 2, 0)], lambda candidate: "sig")
    assert kept([Register(b"", 2, 0)]) == "sig"
