"""What differs between libbpf releases, as data: a ``Profile`` is a table plus behaviours.

Rules:
- A libbpf the model can answer for is a ``Profile``: its built-in
  ``section_defs[]`` table (``oracle.tables``: a shipped release's data, or
  the table generated from a source tree) and the value of each named
  behaviour.  The model reads these fields; nowhere else asks "which version
  is this?".  A tree needs no entry in any list: ``profile_for(table)``.
- Each value a behaviour has had is one ``Behaviour`` row in ``BEHAVIOURS``:
  the ``Profile`` field, the libbpf function it follows, the first release
  with that value and the upstream commit that brought it (the API's first
  release, 0.8.0, has a row for every field), plus the patch releases of
  older minor lines that got it as a backport (``since``).  A release takes,
  per field, the value of its last row that holds there; so a release past
  the newest one known takes the newest behaviour.  The cut points are data; a test
  checks them against the recorded conformance corpus
  (``corpus/traces/<release>/``) and docs/versions.md lists them.
- ``VERIFIED`` lists the releases whose answers were recorded from a real
  build of that release and replay against the model.  A profile's ``status``
  is ``verified`` when its release is, else ``inferred from X``: X the newest
  verified release not after it (or the oldest verified one, for an older
  release).  Patch releases count apart: backports change behaviour inside a
  minor line (1.4.0 and 1.4.2 differ).
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from oracle.model.matching import FirstMatchIndex
from oracle.tables import SecDef, Table, load_table

#: the function every built-in SEC_DEF() installs as prog_prepare_load_fn
LIBBPF_PREPARE_PROG_LOAD = "libbpf_prepare_prog_load"


@dataclass(frozen=True)
class Behaviour:
    """One value of a release-dependent behaviour, from the release that brought it."""

    field: str  # the Profile field
    function: str  # the libbpf function it follows
    first_release: str  # the first upstream release with ``value``
    value: object  # the field's value from ``first_release`` on (until a later row)
    commit: str  # the upstream commit that brought it ("" for the API's first release)
    subject: str  # that commit's subject line, or what the first release does
    #: patch releases of older minor lines that got the change as a backport
    backports: tuple[str, ...] = ()

    def holds(self, version: str) -> bool:
        """The row applies to ``version`` (``since``'s rule, with its backports)."""
        return since(version, self.first_release, self.backports)


def since(version: str, first: str, backports: Sequence[str] = ()) -> bool:
    """``version`` has a change that came in ``first`` on the main line and in each of
    ``backports`` on its own minor line (a stable release: ``1.4.2`` for ``1.4.x``)."""
    release = release_tuple(version)
    if release >= release_tuple(first):
        return True
    return any(release[:2] == release_tuple(b)[:2] and release >= release_tuple(b)
               for b in backports)


#: the API's first release (libbpf_register_prog_handler: LIBBPF_0.8.0)
FIRST_RELEASE: Final = "0.8.0"

#: every release-dependent behaviour, one row per value, oldest first per field; each
#: row read at the release tags named in docs/versions.md (module rules)
BEHAVIOURS: Final[tuple[Behaviour, ...]] = (
    Behaviour("text_program_when_alone", "prog_is_subprog", FIRST_RELEASE, True, "",
              "a .text function is an entry program when it is the object's only program"),
    Behaviour("text_program_when_alone", "prog_is_subprog", "1.5.0", False,
              "ac9ced9eb3d344407ba78976f3e88276453c8eaf",
              "libbpf: never interpret subprogs in .text as entry programs",
              backports=("1.3.4", "1.4.7")),
    Behaviour("set_type_resets_handler", "bpf_program__set_type", FIRST_RELEASE, "never", "",
              "only prog->type is stored; the handler and its callbacks are kept"),
    Behaviour("set_type_resets_handler", "bpf_program__set_type", "1.2.0", "always",
              "3fd6eebb2d4d10546f0dc89cbc14ad110c4e5717",
              "libbpf: disassociate section handler on explicit bpf_program__set_type() call"),
    Behaviour("set_type_resets_handler", "bpf_program__set_type", "1.3.0", "when_changed",
              "1743bd1e402930ef26e0fe7ab7e013b6931af2cc",
              "libbpf: only reset sec_def handler when necessary", backports=("1.2.2",)),
    Behaviour("attach_requires_fd", "bpf_program__attach", FIRST_RELEASE, False, "",
              "prog_attach_fn is called for a program that was never loaded"),
    Behaviour("attach_requires_fd", "bpf_program__attach", "1.4.0", True,
              "7cfc3659953cae15b0292e279e570d597685c1b5",
              "libbpf: Check bpf_map/bpf_program fd validity"),
    Behaviour("struct_ops_rejected_early", "bpf_object_load_prog", FIRST_RELEASE, False, "",
              "only BPF_PROG_TYPE_UNSPEC is rejected before prog_prepare_load_fn"),
    Behaviour("struct_ops_rejected_early", "bpf_object_load_prog", "1.5.0", True,
              "e5146eff759a8bdce65c4391e6ba321d3dec0107",
              "libbpf: improve early detection of doomed-to-fail BPF program loading",
              backports=("1.4.2",)),
    Behaviour("sloppy_builtin_prefix", "find_sec_def", FIRST_RELEASE, True, "",
              "a plain built-in flagged SEC_SLOPPY_PFX also matches every name it is a prefix"
              " of (sec_def_matches' allow_sloppy; LIBBPF_STRICT_SEC_NAME is off)"),
    Behaviour("sloppy_builtin_prefix", "find_sec_def", "1.0.0", False,
              "fcd1b668c6d29a6cb0d7126883a07f5eec6aadde",
              "libbpf: clean up SEC() handling"),
    Behaviour("legacy_maps_section", "bpf_object__elf_collect", FIRST_RELEASE, True, "",
              "a 'maps' section is read as legacy map definitions (bpf_object__init_user_maps;"
              " LIBBPF_STRICT_MAP_DEFINITIONS is off)"),
    Behaviour("legacy_maps_section", "bpf_object__elf_collect", "1.0.0", False,
              "41c612167e2b644e22e1accb14bbf6c139823ad3",
              "libbpf: Reject legacy 'maps' ELF section"),
    Behaviour("clean_error_pointers", "bpf_program__attach", FIRST_RELEASE, False, "",
              "libbpf_err_ptr returns ERR_PTR(err) (LIBBPF_STRICT_CLEAN_PTRS is off): a"
              " prog_attach_fn return past the errno range is a pointer, not an error"),
    Behaviour("clean_error_pointers", "bpf_program__attach", "1.0.0", True,
              "62e8af46d2c269300f1e9e019ef717b283bd808a",
              "libbpf: enforce strict libbpf 1.0 behaviors"),
    Behaviour("reads_enum64_btf", "bpf_object__load_vmlinux_btf", FIRST_RELEASE, False, "",
              "btf__load_vmlinux_btf cannot parse BTF_KIND_ENUM64, so a kernel whose BTF"
              " has it gives -ESRCH to every load that needs vmlinux BTF"),
    Behaviour("reads_enum64_btf", "bpf_object__load_vmlinux_btf", "1.0.0", True,
              "c3f8eecb16ad02ebb3a41a31349f1b851cebe46b",
              "libbpf: Add enum64 parsing and new enum64 public API"),
)

#: releases whose answers were recorded from a real build (corpus/traces/<release>/)
VERIFIED: Final[tuple[str, ...]] = ("0.8.3", "1.0.3", "1.1.2", "1.2.3", "1.3.4", "1.4.6",
                                    "1.4.7", "1.5.0", "1.5.1", "1.6.3", "1.7.0")


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
    #: ``bpf_program__set_type`` (after its -EBUSY check): ``never`` only
    #: stores the type and keeps the handler (and its callbacks); ``always``
    #: also resets ``prog->sec_def``; ``when_changed``: an unchanged type is a
    #: no-op, a changed one resets ``prog->sec_def`` unless it is the fallback.
    set_type_resets_handler: str = "when_changed"
    #: ``bpf_program__attach``: "can't attach BPF program without FD (was it
    #: loaded?)" -EINVAL, checked after -EOPNOTSUPP and before
    #: ``prog_attach_fn``.  Before, ``prog_attach_fn`` is called anyway.
    attach_requires_fd: bool = True
    #: ``bpf_object_load_prog``: a STRUCT_OPS program with no attach BTF id
    #: is -EINVAL before ``prog_prepare_load_fn``.  Before, the callback is
    #: called and the kernel decides.
    struct_ops_rejected_early: bool = True
    #: ``find_sec_def`` -> ``sec_def_matches(..., allow_sloppy)``: a plain-form
    #: built-in whose flags hold ``SEC_SLOPPY_PFX`` also matches every name
    #: that starts with it (``"socketx"`` is ``socket``); custom handlers never.
    sloppy_builtin_prefix: bool = False
    #: ``bpf_object__elf_collect``: a ``maps`` section holds legacy map
    #: definitions, read by ``bpf_object__init_user_maps`` after the scan; later
    #: it is -ENOTSUP in the scan.
    legacy_maps_section: bool = False
    #: ``bpf_object__load_vmlinux_btf``: libbpf parses the kernel's BTF, whose
    #: ``BTF_KIND_ENUM64`` types (Linux 6.0 on) it did not know before; then
    #: ``btf__load_vmlinux_btf`` is -ESRCH for every load that needs vmlinux BTF.
    reads_enum64_btf: bool = True
    #: ``bpf_program__attach`` -> ``libbpf_err_ptr(err)``: NULL with errno set.
    #: Before, ``ERR_PTR(err)``: a ``prog_attach_fn`` return above 0 or below
    #: -4095 (``MAX_ERRNO``) comes back as a "link" ``libbpf_get_error`` calls
    #: 0, which no caller can tell from a real one (destroying it crashes).
    clean_error_pointers: bool = True
    #: the built-ins ``sloppy_builtin_prefix`` applies to, in table order
    sloppy_builtins: tuple[SecDef, ...] = field(default=(), repr=False, compare=False)

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
    if version in VERIFIED:
        return "verified"
    ordered = sorted(VERIFIED, key=release_tuple)
    before = [v for v in ordered if release_tuple(v) <= release]
    return f"inferred from {before[-1] if before else ordered[0]}"


def behaviour_values(version: str) -> dict[str, Any]:
    """Each behaviour field's value for a release: its last row that holds there."""
    values: dict[str, Any] = {}
    for row in BEHAVIOURS:
        if row.field not in values or row.holds(version):
            values[row.field] = row.value
    return values


@functools.cache
def profile_for(table: Table) -> Profile:
    """The profile of the libbpf ``table`` was generated from (a release or a tree)."""
    return Profile(
        version=table.version,
        table=table,
        sec_attachable=table.sec_def_flags["SEC_ATTACHABLE"],
        builtins=FirstMatchIndex.of(((d.sec, d) for d in table.section_defs), memo=True),
        status=status(table.version),
        sloppy_builtins=sloppy_builtins(table),
        **behaviour_values(table.version),
    )


def sloppy_builtins(table: Table) -> tuple[SecDef, ...]:
    """The plain-form built-ins flagged ``SEC_SLOPPY_PFX`` (only 0.x tables have any)."""
    return tuple(d for d in table.section_defs if "SEC_SLOPPY_PFX" in d.flags
                 and not d.sec.endswith((b"/", b"+")))


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
