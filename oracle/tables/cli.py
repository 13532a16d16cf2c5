"""``sec-oracle tables``: show a release's built-in SEC() table, or diff two releases.

Rules:
- ``tables show VERSION`` prints ``section_defs[]`` as aligned plain text, in
  libbpf's order; ``--json`` prints the generated data file itself.
- ``tables diff A B`` matches entries by their ``sec`` text and reports
  entries added, removed and changed (any field), entries whose order relative
  to the other common entries changed ("moved": order decides which entry
  matches first), and enumerators added, removed or changed.  Index shifts
  caused only by insertions or removals are counted, not listed.
- Prog types are shown as ``SEC_DEF`` writes them (``KPROBE`` for
  ``BPF_PROG_TYPE_KPROBE``); attach types by their full name, ``-`` for 0.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from oracle.sourcetree import check_tree
from oracle.tables import SecDef, Table, load_table, table_json
from oracle.tables.generate import dump
from oracle.tables.trees import tree_document, tree_table

PROG_TYPE_PREFIX = "BPF_PROG_TYPE_"
COLUMNS = ("IDX", "SEC", "PROG_TYPE", "EXPECTED_ATTACH_TYPE", "FLAGS", "ATTACH_FN")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tables`` group with ``show`` and ``diff``."""
    group = subparsers.add_parser("tables", help="libbpf's built-in section_defs[] per release")
    commands = group.add_subparsers(dest="tables_command", required=True)
    show = commands.add_parser("show", help="print one release's table")
    show.add_argument("version", metavar="VERSION|DIR",
                      help="libbpf release, e.g. 1.7.0, or a libbpf source tree")
    show.add_argument("--json", action="store_true", help="print the generated JSON data file")
    show.set_defaults(handler=cmd_show)
    diff = commands.add_parser("diff", help="what changed between two releases")
    diff.add_argument("old", metavar="A", help="the older release or source tree")
    diff.add_argument("new", metavar="B", help="the newer release or source tree")
    diff.set_defaults(handler=cmd_diff)


# --------------------------------------------------------------------------- show


@dataclass(frozen=True)
class Release:
    """A release's ``Table`` plus each entry's attach type as ``SEC_DEF`` wrote it.

    The attach type 0 is both "no attach type" (``SEC_DEF`` writes ``0``) and
    ``BPF_CGROUP_INET_INGRESS``; only the data file's name tells them apart.
    """

    table: Table
    attach_written: tuple[str | None, ...]

    def attach_text(self, sec_def: SecDef) -> str:
        """The attach type's name, ``-`` where ``SEC_DEF`` wrote a literal 0."""
        name = self.attach_written[sec_def.index]
        if name is None and sec_def.expected_attach_type == 0:
            return "-"
        return name if name is not None else str(sec_def.expected_attach_type)

    def prog_type_text(self, value: int) -> str:
        """``KPROBE`` for ``BPF_PROG_TYPE_KPROBE``; the number if the enum lacks it."""
        name = self.table.prog_type_name(value)
        return name.removeprefix(PROG_TYPE_PREFIX) if name is not None else str(value)

    def row(self, sec_def: SecDef) -> tuple[str, ...]:
        """One entry as the text columns of ``COLUMNS``."""
        return (
            str(sec_def.index),
            sec_def.sec.decode(),
            self.prog_type_text(sec_def.prog_type),
            self.attach_text(sec_def),
            "|".join(sec_def.flags),
            sec_def.prog_attach_fn or "-",
        )


def release(name: str) -> Release:
    """A shipped release (``1.7.0``) or a libbpf source tree (a directory: its own
    table, ``oracle.tables.trees``); an unknown release raises ``UnknownVersionError``."""
    path = Path(name).expanduser()
    if path.is_dir() or "/" in name:
        tree = check_tree(path, name)
        table = tree_table(tree)
        entries = tree_document(tree)["section_defs"]
    else:
        table = load_table(name)
        entries = json.loads(table_json(table.version))["section_defs"]
    return Release(table, tuple(entry["expected_attach_type"]["name"] for entry in entries))


def aligned(rows: Sequence[Sequence[str]], indent: str = "") -> Iterator[str]:
    """Rows as left-aligned columns (the first, numeric, right-aligned)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [r[0].rjust(widths[0])]
        cells += [cell.ljust(width) for cell, width in zip(r[1:], widths[1:], strict=True)]
        yield (indent + "  ".join(cells)).rstrip()


def cmd_show(args: argparse.Namespace) -> int:
    """``tables show VERSION [--json]``."""
    if args.json:
        path = Path(args.version).expanduser()
        if path.is_dir() or "/" in args.version:
            print(dump(tree_document(check_tree(path, args.version))))
        else:
            print(table_json(args.version), end="")
        return 0
    rel = release(args.version)
    table = rel.table
    print(f"libbpf {table.version} ({table.origin}): {len(table.section_defs)} section_defs")
    for line in aligned([COLUMNS, *(rel.row(d) for d in table.section_defs)]):
        print(line)
    return 0


# --------------------------------------------------------------------------- diff


def keyed(table: Table) -> dict[str, SecDef]:
    """Entries by ``sec`` text; a repeated text gets ``#2``, ``#3``... appended."""
    out: dict[str, SecDef] = {}
    for sec_def in table.section_defs:
        key = sec_def.sec.decode()
        n = 1
        while key in out:
            n += 1
            key = f"{sec_def.sec.decode()}#{n}"
        out[key] = sec_def
    return out


def field_changes(old: Release, new: Release, a: SecDef, b: SecDef) -> list[str]:
    """``field old -> new`` for every field (but index) that differs."""
    changes = []
    pairs = [
        ("prog_type", old.prog_type_text(a.prog_type), new.prog_type_text(b.prog_type)),
        ("prog_type value", str(a.prog_type), str(b.prog_type)),
        ("expected_attach_type", old.attach_text(a), new.attach_text(b)),
        ("expected_attach_type value", str(a.expected_attach_type), str(b.expected_attach_type)),
        ("flags", "|".join(a.flags), "|".join(b.flags)),
        ("cookie", str(a.cookie), str(b.cookie)),
        ("prog_setup_fn", str(a.prog_setup_fn), str(b.prog_setup_fn)),
        ("prog_prepare_load_fn", str(a.prog_prepare_load_fn), str(b.prog_prepare_load_fn)),
        ("prog_attach_fn", str(a.prog_attach_fn), str(b.prog_attach_fn)),
    ]
    for name, before, after in pairs:
        if before != after:
            changes.append(f"{name} {before} -> {after}")
    return changes


def kept_in_order(old_keys: Sequence[str], new_keys: Sequence[str]) -> set[str]:
    """A longest common subsequence of two orders of the same keys."""
    n, m = len(old_keys), len(new_keys)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if old_keys[i] == new_keys[j]:
                best[i][j] = best[i + 1][j + 1] + 1
            else:
                best[i][j] = max(best[i + 1][j], best[i][j + 1])
    kept, i, j = set(), 0, 0
    while i < n and j < m:
        if old_keys[i] == new_keys[j]:
            kept.add(old_keys[i])
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return kept


def section_lines(old: Release, new: Release) -> Iterator[str]:
    """The section_defs part of a diff."""
    a, b = keyed(old.table), keyed(new.table)
    added = [k for k in b if k not in a]
    removed = [k for k in a if k not in b]
    yield f"added ({len(added)}):"
    yield from aligned([new.row(b[k]) for k in added], "  + ") if added else ["  none"]
    yield f"removed ({len(removed)}):"
    yield from aligned([old.row(a[k]) for k in removed], "  - ") if removed else ["  none"]
    common = [k for k in b if k in a]
    changed = [(k, field_changes(old, new, a[k], b[k])) for k in common]
    changed = [(k, c) for k, c in changed if c]
    yield f"changed ({len(changed)}):"
    yield from (f"  ~ {k}: {'; '.join(c)}" for k, c in changed) if changed else ["  none"]
    kept = kept_in_order([k for k in a if k in b], common)
    moved = [k for k in common if k not in kept]
    yield f"moved ({len(moved)}; relative order among common entries, which decides first match):"
    for k in moved:
        yield f"  > {k}: index {a[k].index} -> {b[k].index}"
    if not moved:
        yield "  none"
    shifted = sum(1 for k in kept if a[k].index != b[k].index)
    yield f"{shifted} other common entries changed index only through additions/removals"


def enum_lines(label: str, old: Mapping[str, int], new: Mapping[str, int]) -> Iterator[str]:
    """The part of a diff for one enum: added, removed, changed values."""
    added = [f"  + {k} = {v}" for k, v in new.items() if k not in old]
    removed = [f"  - {k} = {v}" for k, v in old.items() if k not in new]
    changed = [f"  ~ {k} = {old[k]} -> {v}" for k, v in new.items() if k in old and old[k] != v]
    yield (f"enum {label}: {len(added)} added, {len(removed)} removed, {len(changed)} changed")
    yield from added + removed + changed


def label(table: Table) -> str:
    """A shipped release by its version; a tree's table by version and origin."""
    return table.version if table.debian_version else f"{table.version} ({table.origin})"


def diff_lines(old: Release, new: Release) -> Iterator[str]:
    """The whole report of ``tables diff``."""
    ta, tb = old.table, new.table
    yield (
        f"libbpf {label(ta)} -> {label(tb)}: section_defs "
        f"{len(ta.section_defs)} -> {len(tb.section_defs)} entries"
    )
    yield from section_lines(old, new)
    yield from enum_lines("sec_def_flags", ta.sec_def_flags, tb.sec_def_flags)
    yield from enum_lines("bpf_prog_type", ta.prog_types, tb.prog_types)
    yield from enum_lines("bpf_attach_type", ta.attach_types, tb.attach_types)


def cmd_diff(args: argparse.Namespace) -> int:
    """``tables diff A B``."""
    old, new = release(args.old), release(args.new)
    for line in diff_lines(old, new):
        print(line)
    return 0
