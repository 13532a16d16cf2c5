"""libbpf's built-in SEC() tables, one per modelled release, as generated data.

What the data is:
  Tables of other trees (a user's checkout, a patched release) are generated
  at run time by the same generator and cached by source hash
  (``oracle.tables.trees``); they load through ``table_from_document`` with
  the same checks.
  For each release (1.1.2, 1.4.6, 1.5.0, 1.7.0) one JSON file,
  ``data/libbpf-<version>.json``, holds libbpf's ``section_defs[]`` (the
  built-in table ``find_sec_def()`` searches in order), ``enum
  sec_def_flags`` (the values stored as ``sec_def->cookie``) and the
  ``enum bpf_prog_type`` / ``enum bpf_attach_type`` of the ``bpf.h`` shipped
  in the same tarball.

Where it comes from:
  ``python -m oracle.tables.generate`` parses the upstream source of Debian's
  ``libbpf_<version>.orig.tar.gz`` (``oracle.libbpf.debsrc``) and writes the
  files with provenance (Debian version, sha256 of the tarball and of the
  parsed files).  Nothing is typed in by hand; to change the data, change or
  rerun the generator.

Rules:
- This module only reads and checks the files; it never patches a value.
- ``load_table`` accepts exact known versions only ("1.7.0", not "1.7" nor
  "v1.7.0"); anything else is an ``UnknownVersionError`` naming the nearest
  known release.
- Tables are immutable and cached: one ``Table`` object per version.

Invariants (checked on load; a violation means a broken data file, a bug):
- ``section_defs[i].index == i``: the order is libbpf's, and order matters,
  because the first matching entry wins.
- ``prog_type`` and ``expected_attach_type`` are values of the release's own
  enums (``expected_attach_type`` 0 where ``SEC_DEF`` wrote a literal ``0``).
- ``cookie`` is the bitwise OR of the ``flags`` named, each a member of
  ``sec_def_flags``.
- ``prog_types``, ``attach_types`` and ``sec_def_flags`` are name -> value in
  source order, without ``__MAX_*`` sentinels; the reverse lookups
  (``prog_type_name``, ``attach_type_name``) return the first name defined.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from oracle.errors import UnknownVersionError

__all__ = ["SecDef", "Table", "known_versions", "load_table", "table_from_document",
           "table_json"]

FORMAT_NAME: Final = "libbpf-sec-oracle/tables"
FORMAT_VERSION: Final = 1
_DATA_NAME: Final = re.compile(r"libbpf-(\d+\.\d+\.\d+)\.json")


@dataclass(frozen=True, slots=True)
class SecDef:
    """One ``struct bpf_sec_def`` of libbpf's built-in ``section_defs[]``."""

    index: int
    sec: bytes  # the pattern text, e.g. b"kprobe+"
    prog_type: int
    expected_attach_type: int
    cookie: int  # the flags value libbpf stores as sec_def->cookie
    flags: tuple[str, ...]
    prog_setup_fn: str | None
    prog_prepare_load_fn: str | None
    prog_attach_fn: str | None


@dataclass(frozen=True)
class Table:
    """A release's built-in section table and the enums it is written in."""

    version: str
    debian_version: str | None  # None for a table generated from a source tree
    section_defs: tuple[SecDef, ...]
    sec_def_flags: Mapping[str, int]
    prog_types: Mapping[str, int]
    attach_types: Mapping[str, int]
    #: where the data comes from: ``Debian 1.7.0-1`` or ``tree /path (source 1a2b3c4d5e6f)``
    origin: str = ""
    _prog_type_names: Mapping[int, str] = field(init=False, repr=False, compare=False)
    _attach_type_names: Mapping[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prog_type_names", _reverse(self.prog_types))
        object.__setattr__(self, "_attach_type_names", _reverse(self.attach_types))

    def __hash__(self) -> int:
        return hash((self.version, self.debian_version, self.section_defs))

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle: rebuild from plain dicts (jobs > 1 send it).
        return (Table, (self.version, self.debian_version, self.section_defs,
                        dict(self.sec_def_flags), dict(self.prog_types),
                        dict(self.attach_types), self.origin))

    def prog_type_name(self, value: int) -> str | None:
        """The ``enum bpf_prog_type`` name of ``value`` in this release, or None."""
        return self._prog_type_names.get(value)

    def attach_type_name(self, value: int) -> str | None:
        """The ``enum bpf_attach_type`` name of ``value`` in this release, or None."""
        return self._attach_type_names.get(value)


def _reverse(names: Mapping[str, int]) -> Mapping[int, str]:
    """value -> first name with that value."""
    reverse: dict[int, str] = {}
    for name, value in names.items():
        reverse.setdefault(value, name)
    return MappingProxyType(reverse)


def _version_key(version: str) -> tuple[int, ...]:
    """``"1.4.6"`` -> ``(1, 4, 6)``."""
    return tuple(int(part) for part in version.split("."))


@functools.cache
def known_versions() -> tuple[str, ...]:
    """The releases with a table, oldest first."""
    data = resources.files(__name__).joinpath("data")
    found = [m.group(1) for f in data.iterdir() if (m := _DATA_NAME.fullmatch(f.name))]
    return tuple(sorted(found, key=_version_key))


def nearest_version(version: str) -> str | None:
    """The known release closest to ``version`` (older on a tie), or None if unparsable.

    Only the two neighbours in version order compete (so 2.0 -> the newest);
    between them the smaller per-component distance wins, major first: 1.6.0
    is as far from 1.5.0 as from 1.7.0 and the older wins.  "1.7" and "v1.7.0"
    count as 1.7.0.
    """
    match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", version.strip())
    if match is None or not known_versions():
        return None
    wanted = tuple(int(part or 0) for part in match.groups())
    keyed = [(_version_key(known), known) for known in known_versions()]
    below = [pair for pair in keyed if pair[0] <= wanted][-1:]
    above = [pair for pair in keyed if pair[0] >= wanted][:1]

    def distance(pair: tuple[tuple[int, ...], str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return tuple(abs(a - b) for a, b in zip(pair[0], wanted, strict=True)), pair[0]

    return min(below + above, key=distance)[1]


def unknown_version(version: str) -> UnknownVersionError:
    """The one-line error for a version without a table."""
    known = ", ".join(known_versions())
    nearest = nearest_version(version)
    if nearest is None:
        return UnknownVersionError(f"no table for libbpf {version!r} (known: {known})")
    return UnknownVersionError(
        f"no table for libbpf {version}; nearest known is {nearest} (known: {known})"
    )


def table_json(version: str) -> str:
    """The data file of ``version`` as text (what ``tables show --json`` prints)."""
    if version not in known_versions():
        raise unknown_version(version)
    return resources.files(__name__).joinpath("data", f"libbpf-{version}.json").read_text()


@functools.cache
def load_table(version: str) -> Table:
    """The table of ``version``; an unknown version raises ``UnknownVersionError``."""
    document = json.loads(table_json(version))
    if document.get("libbpf_version") != version:
        raise ValueError(f"libbpf-{version}.json holds libbpf {document.get('libbpf_version')}")
    return table_from_document(document, f"libbpf-{version}.json")


def origin_of(document: Mapping[str, Any]) -> str:
    """The ``Table.origin`` text of a data document."""
    if document.get("debian_version"):
        return f"Debian {document['debian_version']}"
    source = document.get("source", {})
    if source.get("upstream_commit"):
        return f"upstream {document['libbpf_version']} (commit {source['upstream_commit'][:12]})"
    return f"tree {source.get('tree')} (source {str(source.get('tree_sha256'))[:12]})"


def table_from_document(document: Mapping[str, Any], where: str) -> Table:
    """A ``Table`` from a generated data document; a broken one raises ``ValueError``."""
    if (document.get("format"), document.get("format_version")) != (FORMAT_NAME, FORMAT_VERSION):
        raise ValueError(f"{where}: unsupported format {document.get('format')!r}")
    version = str(document["libbpf_version"])
    table = Table(
        version=version,
        debian_version=document["debian_version"],
        section_defs=tuple(_sec_def(entry) for entry in document["section_defs"]),
        sec_def_flags=_enum(document["sec_def_flags"]),
        prog_types=_enum(document["bpf_prog_type"]),
        attach_types=_enum(document["bpf_attach_type"]),
        origin=origin_of(document),
    )
    _check(table, document["section_defs"], where)
    return table


def _enum(data: Mapping[str, Any]) -> Mapping[str, int]:
    """name -> value, source order, from ``{"enumerators": [[name, value], ...]}``."""
    return MappingProxyType({str(name): int(value) for name, value in data["enumerators"]})


def _sec_def(entry: Mapping[str, Any]) -> SecDef:
    """A ``SecDef`` from one JSON entry."""
    return SecDef(
        index=int(entry["index"]),
        sec=str(entry["sec"]).encode(),
        prog_type=int(entry["prog_type"]["value"]),
        expected_attach_type=int(entry["expected_attach_type"]["value"]),
        cookie=int(entry["flags"]["value"]),
        flags=tuple(str(name) for name in entry["flags"]["names"]),
        prog_setup_fn=entry["prog_setup_fn"],
        prog_prepare_load_fn=entry["prog_prepare_load_fn"],
        prog_attach_fn=entry["prog_attach_fn"],
    )


def _check(table: Table, entries: list[dict[str, Any]], where: str) -> None:
    """Raise ``ValueError`` if ``table`` breaks an invariant of the module docstring."""
    for position, (sec_def, entry) in enumerate(zip(table.section_defs, entries, strict=True)):
        flag_values = [table.sec_def_flags.get(flag) for flag in sec_def.flags]
        cookie = 0
        for value in flag_values:
            cookie |= value or 0
        attach_name = entry["expected_attach_type"]["name"]
        problems = [
            sec_def.index != position,
            table.prog_types.get(entry["prog_type"]["name"]) != sec_def.prog_type,
            attach_name is None and sec_def.expected_attach_type != 0,
            attach_name is not None
            and table.attach_types.get(attach_name) != sec_def.expected_attach_type,
            None in flag_values or cookie != sec_def.cookie,
        ]
        if any(problems):
            raise ValueError(f"{where}: section_defs[{position}] ({sec_def.sec!r}) is inconsistent")
