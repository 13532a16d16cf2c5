"""What differs between libbpf releases, as data: a ``Profile`` is a table plus behaviours.

Rules:
- A libbpf the model can answer for is a ``Profile``: its built-in
  ``section_defs[]`` table (``oracle.tables``: a shipped release's data, or
  the table generated from a source tree) and the value of each named
  behaviour.  The model reads these fields; nowhere else asks "which version
  is this?".  A tree needs no entry in any list: ``profile_for(table)``.
- Each behaviour is one ``Behaviour`` row in ``BEHAVIOURS``: the ``Profile``
  field it sets, the libbpf function it follows, its value before and from
  ``first_release`` on, and the upstream commit that introduced the new
  value.  A release takes, for each row, ``since`` if it is at or after
  ``first_release``, else ``before``; so a release past the newest one known
  takes the newest behaviour.  The cut points are data and a test checks each
  against the recorded conformance corpus (``corpus/traces/<release>/``).
- ``VERIFIED`` lists the releases whose answers were recorded from a real
  build of that release and replay against the model.  A profile's ``status``
  is ``verified`` when its release's major.minor is verified, else
  ``inferred from X``: X the newest verified release not after it (or the
  oldest verified one, for an older release).
- The matching rules, the registry and ``OPTS_VALID`` are the same in every
  release from 0.8.0 on, but for bugs fixed along the way
  (``docs/known-bugs.md``; ``oracle.campaign.known`` says where each applies).
- ``rejects_empty_sec`` is a known bug's fix, not a release behaviour
  (KB1: no release rejects ``""``); ``with_fixes`` gives the profile of a
  build that has that fix, as a known bug's data names it.

Invariant: a ``Profile`` is immutable and shared; its built-in index is built
once per table; it pickles as its table (the index is rebuilt).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Final

from oracle.model.matching import FirstMatchIndex
from oracle.tables import SecDef, Table, load_table

#: the function every built-in SEC_DEF() installs as prog_prepare_load_fn
LIBBPF_PREPARE_PROG_LOAD = "libbpf_prepare_prog_load"


@dataclass(frozen=True)
class Behaviour:
    """One release-dependent behaviour and where upstream changed it."""

    field: str  # the Profile field
    function: str  # the libbpf function it follows
    before: bool  # the value in releases before first_release
    since: bool  # the value from first_release on
    first_release: str  # the first upstream release with ``since``
    commit: str  # the upstream commit that changed it
    subject: str  # that commit's subject line


#: every release-dependent behaviour, with its cut point (see the module rules)
BEHAVIOURS: Final[tuple[Behaviour, ...]] = (
    Behaviour(
        "text_program_when_alone", "prog_is_subprog", True, False, "1.5.0",
        "", "(cut point read from releases 1.4.6 and 1.5.0; commit not yet named)"),
    Behaviour(
        "set_type_drops_handler", "bpf_program__set_type", False, True, "1.4.0",
        "", "(cut point read from releases 1.1.2 and 1.4.6; commit not yet named)"),
    Behaviour(
        "attach_requires_fd", "bpf_program__attach", False, True, "1.4.0",
        "", "(cut point read from releases 1.1.2 and 1.4.6; commit not yet named)"),
    Behaviour(
        "struct_ops_rejected_early", "bpf_object_load_prog", False, True, "1.4.0",
        "", "(cut point read from releases 1.1.2 and 1.4.6; commit not yet named)"),
)

#: releases whose answers were recorded from a real build (corpus/traces/<release>/)
VERIFIED: Final[tuple[str, ...]] = ("1.1.2", "1.4.6", "1.5.0", "1.7.0")


@dataclass(frozen=True)
class Profile:
    """One libbpf (a release or a tree) as the model sees it."""

    version: str  # the release: a shipped table's, or what a tree's libbpf.map names
    table: Table
    #: enum sec_def_flags' SEC_ATTACHABLE (used by libbpf_attach_type_by_name)
    sec_attachable: int
    builtins: FirstMatchIndex[SecDef] = field(repr=False, compare=False)
    #: ``verified`` or ``inferred from X`` (module rules)
    status: str = "verified"

    # -- object lifecycle behaviours (oracle.model.objects); rows of BEHAVIOURS --
    #: ``prog_is_subprog``: a ``.text`` function is a program when it is the
    #: object's only function (``&& obj->nr_programs > 1``); later every
    #: ``.text`` function is a subprogram.
    text_program_when_alone: bool = False
    #: ``bpf_program__set_type``: an unchanged type is a no-op, a changed one
    #: resets ``prog->sec_def`` unless it is the fallback.  Before, it only
    #: stores the type and keeps the handler (and its callbacks).
    set_type_drops_handler: bool = True
    #: ``bpf_program__attach``: "can't attach BPF program without FD (was it
    #: loaded?)" -EINVAL, checked after -EOPNOTSUPP and before
    #: ``prog_attach_fn``.  Before, ``prog_attach_fn`` is called anyway.
    attach_requires_fd: bool = True
    #: ``bpf_object_load_prog``: a STRUCT_OPS program with no attach BTF id
    #: is -EINVAL before ``prog_prepare_load_fn``.  Before, the callback is
    #: called and the kernel decides.
    struct_ops_rejected_early: bool = True

    # -- known-bug fixes (oracle.campaign.known: a bug's ``fix`` names these) ----
    #: ``libbpf_register_prog_handler`` rejects ``sec == ""`` with -EINVAL
    #: (the fix KB1 suggests); no release has it.
    rejects_empty_sec: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        fixes = {name: getattr(self, name) for name in FIX_FIELDS}
        return (_rebuild, (self.table, fixes))


#: Profile fields that known-bug fixes set (never release behaviours)
FIX_FIELDS: Final = ("rejects_empty_sec",)


def _rebuild(table: Table, fixes: dict[str, bool]) -> Profile:
    return with_fixes(profile_for(table), fixes)


def release_tuple(version: str) -> tuple[int, ...]:
    """``"1.4.6"`` -> ``(1, 4, 6)``: the order behaviours are cut at."""
    return tuple(int(part) for part in version.split("."))


def status(version: str) -> str:
    """``verified`` or ``inferred from X`` for a release (module rules)."""
    release = release_tuple(version)
    if any(release_tuple(v)[:2] == release[:2] for v in VERIFIED):
        return "verified"
    ordered = sorted(VERIFIED, key=release_tuple)
    before = [v for v in ordered if release_tuple(v) <= release]
    return f"inferred from {(before or ordered)[-1]}"


def behaviour_values(version: str) -> dict[str, bool]:
    """Each behaviour field's value for a release."""
    release = release_tuple(version)
    return {b.field: b.since if release >= release_tuple(b.first_release) else b.before
            for b in BEHAVIOURS}


@functools.cache
def profile_for(table: Table) -> Profile:
    """The profile of the libbpf ``table`` was generated from (a release or a tree)."""
    return Profile(
        version=table.version,
        table=table,
        sec_attachable=table.sec_def_flags["SEC_ATTACHABLE"],
        builtins=FirstMatchIndex.of((d.sec, d) for d in table.section_defs),
        status=status(table.version),
        **behaviour_values(table.version),
    )


@functools.cache
def profile(version: str) -> Profile:
    """The profile of a shipped release; an unknown one raises ``UnknownVersionError``."""
    return profile_for(load_table(version))


def with_fixes(base: Profile, fixes: dict[str, bool]) -> Profile:
    """``base`` with known-bug fix fields set (``FIX_FIELDS`` only)."""
    unknown = set(fixes) - set(FIX_FIELDS)
    if unknown:
        raise ValueError(f"not known-bug fix fields: {sorted(unknown)}")
    if all(getattr(base, name) == value for name, value in fixes.items()):
        return base
    changes: dict[str, Any] = dict(fixes)
    return dataclasses.replace(base, **changes)


def as_profile(model: str | Profile) -> Profile:
    """A profile from a shipped release's version string, or the profile itself."""
    return profile(model) if isinstance(model, str) else model
