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


@functools.cache
def profile(version: str) -> Profile:
    """The release's profile; an unknown version raises ``UnknownVersionError``."""
    table = load_table(version)
    return Profile(
        version=table.version,
        table=table,
        sec_attachable=table.sec_def_flags["SEC_ATTACHABLE"],
        builtins=FirstMatchIndex.of((d.sec, d) for d in table.section_defs),
    )


def versions() -> tuple[str, ...]:
    """The releases the model knows."""
    return known_versions()
