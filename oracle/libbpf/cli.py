"""``sec-oracle libbpf``: build and list the libbpf targets of ``--libbpf``.

Commands:
  ``libbpf build [--force] TARGET...``
                              resolve each target (building a release or tree
                              on first use, or when its cached .so no longer
                              matches its build.json; ``--force``: rebuild it
                              anyway) and print the path of its .so, one a
                              line (``--force`` does nothing to system or a PATH)
  ``libbpf list``             ``system`` and every build in the cache: target,
                              variant, what the library reports, the oracle
                              table it selects, the source hash of a tree
                              build, path
  ``libbpf mutant list``      the deliberately broken builds (``mutants``):
                              name, releases, what is broken
  ``libbpf mutant build NAME [--version V] [--force]``
                              build that mutant of release V (default 1.7.0)
                              if needed; print the path of its .so

Rules:
- Only parsing and printing here; the work is in ``targets``, ``build`` and
  ``mutants``.
- ``list`` never builds, and a target that fails to load is listed with its
  one-line error instead of stopping the listing.
- Errors are ``OracleError``s, which the top-level CLI prints in one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from oracle import sourcetree
from oracle.errors import OracleError
from oracle.libbpf import build as builder
from oracle.libbpf import mutants
from oracle.libbpf.targets import SYNTAX, Target, probe, resolve


def register(subparsers: Any) -> None:
    """Add the ``libbpf`` group to the top-level parser's subcommands."""
    group = subparsers.add_parser("libbpf", help="build and list libbpf targets")
    commands = group.add_subparsers(dest="libbpf_command", required=True)
    build = commands.add_parser("build", help="build a target if needed; print its .so path")
    build.add_argument("targets", nargs="+", metavar="TARGET", help=SYNTAX)
    build.add_argument("--force", action="store_true",
                       help="rebuild a release or tree target even if it is in the cache")
    build.set_defaults(handler=run_build)
    listing = commands.add_parser("list", help="list system and the cached builds")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=run_list)
    mutant = commands.add_parser("mutant", help="deliberately broken builds, to test check")
    mutant_commands = mutant.add_subparsers(dest="mutant_command", required=True)
    mutant_list = mutant_commands.add_parser("list", help="list the mutants")
    mutant_list.set_defaults(handler=run_mutant_list)
    mutant_build = mutant_commands.add_parser("build", help="build a mutant; print its .so path")
    mutant_build.add_argument("name", metavar="NAME", help="a mutant, see libbpf mutant list")
    mutant_build.add_argument("--version", default="1.7.0", metavar="V",
                              help="the libbpf release to break (default 1.7.0)")
    mutant_build.add_argument("--force", action="store_true",
                              help="rebuild it even if it is in the cache")
    mutant_build.set_defaults(handler=run_mutant_build)


def run_build(args: argparse.Namespace) -> int:
    for spec in args.targets:
        print(resolve(spec, force=args.force).path, flush=True)
    return 0


def run_list(args: argparse.Namespace) -> int:
    rows = [_row(spec) for spec in _listed_specs()]
    rows += [_tree_row(done) for done in builder.published_trees()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    columns = ("target", "variant", "reports", "table", "source", "path")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns[:-1]]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=False)) + "  PATH")
    for row in rows:
        cells = [str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=False)]
        error = f"  ({row['error']})" if row["error"] else ""
        print("  ".join(cells) + f"  {row['path']}{error}")
    return 0


def run_mutant_list(args: argparse.Namespace) -> int:
    width = max(len(m.name) for m in mutants.MUTANTS)
    for m in mutants.MUTANTS:
        print(f"{m.name.ljust(width)}  {','.join(m.versions)}  {m.description}")
    return 0


def run_mutant_build(args: argparse.Namespace) -> int:
    print(mutants.build_mutant(args.version, args.name, force=args.force), flush=True)
    return 0


def _listed_specs() -> list[str]:
    return ["system", *(builder.spec(v, variant) for v, variant, _ in builder.published())]


def _row(spec: str, target: Target | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"target": spec}
    row.update(dict.fromkeys(("variant", "reports", "table", "source", "path"), "-"),
               error=None)
    try:
        target = target or resolve(spec, build=False)
        row.update(variant=target.variant, path=str(target.path))
        if target.source_sha256 is not None:
            row["source"] = target.source_sha256[:12]
        info = probe(target)
    except OracleError as exc:
        row["error"] = f"error: {exc}"
        return row
    row["reports"] = f"{info.version_string} ({info.major}.{info.minor})"
    row["table"] = "tree" if target.kind == "tree" else (info.table_version or "none")
    return row


def _tree_row(done: builder.TreeBuild) -> dict[str, Any]:
    """A tree build as it was built (the tree may have changed or gone since)."""
    spec = builder.spec(str(done.tree), done.variant)
    target = Target(spec, "tree", done.release, done.variant, done.so, done.tree,
                    done.source_sha256)
    row = _row(spec, target)
    if not sourcetree.is_tree(done.tree) or sourcetree.source_hash(done.tree) \
            != done.source_sha256:
        row["error"] = "the tree has changed since (or is gone): this build is of the earlier state"
    return row
