"""What the fuzzer expects, as data: which documented bugs it steers around, which it may meet.

Everything here is derived from ``corpus/known-findings.json`` (through
``oracle.campaign.known``); nothing names a release by hand.

Rules:
- ``policy(version, variant)`` says how the in-process harness keeps one
  process usable for millions of inputs:
  * ``anchor``: the release has a bug triggered by emptying the custom list
    (trigger ``registers_after_emptying``, KB2 on 1.1.2).  The harness
    registers ``runner.ANCHOR`` once, first (so its id is 1), never
    unregisters it, and drops any ``Unregister`` of its id from an input.
  * ``skip_empty_sec``: a sanitizer build of a release with the
    ``registers_empty_sec`` bug (KB1) halts on the first lookup that reaches a
    ``sec == ""`` handler.  The harness drops such ``Register`` s (and the
    ``Unregister`` s naming them) from inputs, unless ``allow_known`` is set
    (then KB1 crashes are found and triaged as known).  Plain builds read a
    heap byte that is never '/' or '+', and agree with the model (D8).
  * KB3 (registry changes under an open object) is kept out by the decoder
    itself (``fuzz.decode``, lifecycle mode).
- ``admissible(ops, policy)`` is the op list the harness really runs for an
  input; ``fresh_case(ops, policy)`` is the same list as a case for a fresh
  process (the anchor prepended, ``HandleRef`` s rebased), which is what triage
  re-runs.  Both are pure functions of the decoded ops, so a crash file
  triages to exactly what the harness ran (modulo absolute handler ids).
- ``known_signatures(version)`` are the signature patterns a fuzz run on that
  release may report without failing; ``classify`` names the documented bug
  behind a finding (signature *and* trigger must match).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from oracle.campaign.known import affects, known_bugs
from oracle.campaign.runner import ANCHOR
from oracle.campaign.shrink import drop_ops
from oracle.ops import Op, Register, Unregister, rebase

SANITIZER_VARIANTS: Final = ("asan", "fuzz")
#: the anchor's handler id: it is the first registration of the harness process
ANCHOR_ID: Final = 1


@dataclass(frozen=True)
class Policy:
    version: str
    variant: str
    anchor: bool
    skip_empty_sec: bool


def policy(version: str, variant: str, *, allow_known: bool = False) -> Policy:
    """How the harness runs inputs on this release and build (see module rules)."""
    return Policy(
        version=version,
        variant=variant,
        anchor=affects(version, "registers_after_emptying"),
        skip_empty_sec=(variant in SANITIZER_VARIANTS and not allow_known
                        and affects(version, "registers_empty_sec")),
    )


def admissible(ops: Sequence[Op], pol: Policy) -> list[Op]:
    """The ops the harness runs for a decoded input (see module rules)."""
    drop: set[int] = set()
    for i, op in enumerate(ops):
        empty_sec = type(op) is Register and op.sec == b""
        names_anchor = type(op) is Unregister and op.handler == ANCHOR_ID
        if (pol.skip_empty_sec and empty_sec) or (pol.anchor and names_anchor):
            drop.add(i)
    return drop_ops(ops, drop) if drop else list(ops)


def fresh_case(ops: Sequence[Op], pol: Policy) -> list[Op]:
    """``admissible`` ops as a fresh-process case: behind the anchor when there is one.

    An ``Unregister(1)`` of the input was dropped by ``admissible`` (it names
    the anchor); in the fresh case the anchor is again handler 1.
    """
    ops = admissible(ops, pol)
    if not pol.anchor:
        return ops
    return [ANCHOR, *(rebase(op, 1, 0) for op in ops)]


def known_signatures(version: str) -> tuple[re.Pattern[str], ...]:
    """Signature patterns of documented bugs on ``version``: allowed outcomes of a run."""
    return tuple(bug.signature for bug in known_bugs() if bug.affects(version))


def signature_is_known(version: str, signature: str) -> bool:
    return any(p.fullmatch(signature) for p in known_signatures(version))
