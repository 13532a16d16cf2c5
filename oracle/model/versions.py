"""What differs between libbpf releases, as data: one ``Profile`` per release.

Rules:
- Releases differ in their built-in ``section_defs[]`` table (generated data,
  ``oracle.tables``) and in a few named behaviours, each a field of
  ``Profile`` with the libbpf function it comes from.  The rest of the model
  reads these fields; nowhere else asks "which version is this?".
- The matching rules, the registry and ``OPTS_VALID`` are the same in all four
  modelled releases (``sec_def_matches``, ``find_sec_def``,
  ``libbpf_register_prog_handler``, ``libbpf_unregister_prog_handler``,
  ``libbpf_prog_type_by_name`` and ``libbpf_attach_type_by_name`` are
  byte-identical in 1.1.2, 1.4.6, 1.5.0 and 1.7.0, but for a realloc fix in
  unregister that is a bug fix, listed in docs/known-bugs.md, not a behaviour).

- The object lifecycle (``oracle.model.objects``) does differ: four named
  behaviours (``text_program_when_alone``, ``set_type_drops_handler``,
  ``attach_requires_fd``, ``struct_ops_rejected_early``), each documented on
  its field with the libbpf function and the releases it holds for.

Invariant: a ``Profile`` is immutable and shared; its built-in index is built
once per release.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from oracle.model.matching import FirstMatchIndex
from oracle.tables import SecDef, Table, known_versions, load_table

#: the function every built-in SEC_DEF() installs as prog_prepare_load_fn
LIBBPF_PREPARE_PROG_LOAD = "libbpf_prepare_prog_load"


@dataclass(frozen=True)
class Profile:
    """One libbpf release as the model sees it."""

    version: str
    table: Table
    #: enum sec_def_flags' SEC_ATTACHABLE (used by libbpf_attach_type_by_name)
    sec_attachable: int
    builtins: FirstMatchIndex[SecDef] = field(repr=False, compare=False)

    # -- object lifecycle behaviours (oracle.model.objects) ----------------------
    #: ``prog_is_subprog``: a ``.text`` function is a program when it is the
    #: object's only function (``&& obj->nr_programs > 1``); 1.1.2, 1.4.6.
    #: From 1.5.0 every ``.text`` function is a subprogram.
    text_program_when_alone: bool = False
    #: ``bpf_program__set_type``: an unchanged type is a no-op, a changed one
    #: resets ``prog->sec_def`` unless it is the fallback; 1.4.6+.  1.1.2 only
    #: stores the type and keeps the handler (and its callbacks).
    set_type_drops_handler: bool = True
    #: ``bpf_program__attach``: "can't attach BPF program without FD (was it
    #: loaded?)" -EINVAL, checked after -EOPNOTSUPP and before
    #: ``prog_attach_fn``; 1.4.6+.  1.1.2 calls ``prog_attach_fn`` anyway.
    attach_requires_fd: bool = True
    #: ``bpf_object_load_prog``: a STRUCT_OPS program with no attach BTF id
    #: is -EINVAL before ``prog_prepare_load_fn``; 1.4.6+.  1.1.2 calls the
    #: callback and leaves it to the kernel.
    struct_ops_rejected_early: bool = True


@functools.cache
def profile(version: str) -> Profile:
    """The release's profile; an unknown version raises ``UnknownVersionError``."""
    table = load_table(version)
    release = release_tuple(table.version)
    return Profile(
        version=table.version,
        table=table,
        sec_attachable=table.sec_def_flags["SEC_ATTACHABLE"],
        builtins=FirstMatchIndex.of((d.sec, d) for d in table.section_defs),
        text_program_when_alone=release < (1, 5),
        set_type_drops_handler=release >= (1, 4),
        attach_requires_fd=release >= (1, 4),
        struct_ops_rejected_early=release >= (1, 4),
    )


def release_tuple(version: str) -> tuple[int, ...]:
    """``"1.4.6"`` -> ``(1, 4, 6)``: the release order the behaviour fields are cut at.

    The cut points were read in the four modelled releases' libbpf.c; a
    release in between (1.2, 1.3) is placed by its number, unverified.
    """
    return tuple(int(part) for part in version.split("."))


def versions() -> tuple[str, ...]:
    """The releases the model knows."""
    return known_versions()
