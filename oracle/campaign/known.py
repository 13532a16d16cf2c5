"""Real libbpf bugs already documented (docs/known-bugs.md), recognised by signature and trigger.

Rules:
- The entries are data (``corpus/known-findings.json``): an id, a title, the
  first release with the bug, the release that fixed it (with the stable
  releases it was backported to) or null, a regular expression over finding
  signatures, the name of a trigger predicate defined here, and optionally
  ``fix``: the ``Profile`` fields of a build that has fixed it.
- A release is affected from ``first`` until ``fixed`` (``versions.since``, so
  a backport counts on its own minor line).  A release or tree past every
  known one is affected unless a fix is recorded: on libbpf's master a known
  bug is reported as known and still present, not as new.
- A finding is known when its release is affected, its signature matches, and
  the trigger holds for its *minimal* ops: the signature says what broke, the
  trigger says the documented cause is present.  Plain builds crash without
  frames, so the trigger is what tells a known heap corruption from a new one.
- Known findings are reported but do not fail a run (unless ``--strict``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from oracle.errors import OracleError
from oracle.model.oracle import Oracle
from oracle.model.versions import since
from oracle.ops import Close, Op, Open, Register, Unregister
from oracle.shipped import CORPUS

KNOWN_FILE: Final = CORPUS / "known-findings.json"


def registers_empty_sec(ops: Sequence[Op]) -> bool:
    """KB1: a handler with ``sec == ""`` is registered (sec_def_matches reads sec[-1])."""
    return any(isinstance(op, Register) and op.sec == b"" for op in ops)


def registers_after_emptying(ops: Sequence[Op]) -> bool:
    """KB2: the custom list goes from non-empty to empty, then a non-NULL sec registers."""
    oracle = Oracle("1.1.2")
    emptied = False
    for op in ops:
        before = len(oracle.custom_handlers())
        oracle.apply(op)
        after = len(oracle.custom_handlers())
        if isinstance(op, Unregister) and before and not after:
            emptied = True
        elif isinstance(op, Register) and op.sec is not None and emptied:
            return True
    return False


def registry_changes_under_open_object(ops: Sequence[Op]) -> bool:
    """KB3: a Register or Unregister runs while an object opened earlier is still open."""
    open_now: set[int] = set()
    opens = 0
    for op in ops:
        if isinstance(op, Open):
            open_now.add(opens)
            opens += 1
        elif isinstance(op, Close):
            open_now.discard(op.obj.index)
        elif isinstance(op, Register | Unregister) and open_now:
            return True
    return False


def always(ops: Sequence[Op]) -> bool:
    return True


TRIGGERS: Final[dict[str, Callable[[Sequence[Op]], bool]]] = {
    "registers_empty_sec": registers_empty_sec,
    "registers_after_emptying": registers_after_emptying,
    "registry_changes_under_open_object": registry_changes_under_open_object,
    "always": always,
}


@dataclass(frozen=True)
class Fixed:
    """Where a known bug was fixed: a main-line release and its stable backports."""

    release: str
    backports: tuple[str, ...] = ()
    commit: str = ""
    subject: str = ""


@dataclass(frozen=True)
class KnownBug:
    id: str
    title: str
    first: str  # the first release with the bug
    fixed: Fixed | None  # where it was fixed, or None
    signature: re.Pattern[str]
    trigger: str
    doc: str
    #: Profile fields of a build without the bug (``versions.with_fixes``)
    fix: tuple[tuple[str, bool], ...] = ()

    def affects(self, version: str) -> bool:
        """The release ``version`` has this bug (module rules)."""
        if not since(version, self.first):
            return False
        return self.fixed is None or not since(version, self.fixed.release,
                                               self.fixed.backports)

    def triggered(self, version: str, ops: Sequence[Op]) -> bool:
        """``ops`` contain this bug's documented cause, on a release it affects."""
        return self.affects(version) and TRIGGERS[self.trigger](ops)

    def explains(self, version: str, signature: str, ops: Sequence[Op]) -> bool:
        return self.signature.fullmatch(signature) is not None and self.triggered(version, ops)


@functools.cache
def known_bugs(path: Path | None = None) -> tuple[KnownBug, ...]:
    """The documented bugs; a broken data file is a one-line ``OracleError``."""
    try:
        entries = json.loads((path or KNOWN_FILE).read_text())["known"]
        return tuple(
            KnownBug(
                id=e["id"],
                title=e["title"],
                first=_release(e["first"]),
                fixed=None if e["fixed"] is None else Fixed(
                    _release(e["fixed"]["release"]),
                    tuple(_release(b) for b in e["fixed"].get("backports", [])),
                    e["fixed"].get("commit", ""), e["fixed"].get("subject", "")),
                signature=re.compile(e["signature"]),
                trigger=e["trigger"] if e["trigger"] in TRIGGERS else _bad(e["trigger"]),
                doc=e["doc"],
                fix=tuple(sorted((str(k), bool(v)) for k, v in e.get("fix", {}).items())),
            )
            for e in entries
        )
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise OracleError(f"cannot read the known-findings list: {exc}") from None


def _bad(trigger: str) -> str:
    raise ValueError(f"unknown trigger {trigger!r}")


def _release(text: object) -> str:
    if not isinstance(text, str) or re.fullmatch(r"\d+\.\d+\.\d+", text) is None:
        raise ValueError(f"not a release X.Y.Z: {text!r}")
    return text


def explain(version: str, signature: str, ops: Sequence[Op]) -> KnownBug | None:
    """The documented bug behind a finding, if any."""
    for bug in known_bugs():
        if bug.explains(version, signature, ops):
            return bug
    return None


def affects(version: str, trigger: str) -> bool:
    """A documented bug of ``version`` has this trigger (what generators steer around)."""
    return any(bug.affects(version) and bug.trigger == trigger for bug in known_bugs())


def triggered_bugs(version: str, ops: Sequence[Op]) -> frozenset[str]:
    """The ids of the documented bugs of ``version`` whose cause ``ops`` contain."""
    return frozenset(bug.id for bug in known_bugs() if bug.triggered(version, ops))


def without_new_known_causes(
    version: str, ops: Sequence[Op], failing: Callable[[list[Op]], str | None]
) -> Callable[[list[Op]], str | None]:
    """A shrinker predicate that refuses (None) candidates bringing in the cause of a
    documented bug that ``ops`` lacked: a shrink step must not trade a finding's own
    cause for a known one (a pattern shortened to ``""`` is KB1's cause)."""
    allowed = triggered_bugs(version, ops)

    def predicate(candidate: list[Op]) -> str | None:
        if triggered_bugs(version, candidate) - allowed:
            return None
        return failing(candidate)

    return predicate


def triggers_known_bug(version: str, ops: Sequence[Op]) -> bool:
    """``ops`` trigger some documented bug of ``version`` (their answers are not reliable)."""
    return bool(triggered_bugs(version, ops))
