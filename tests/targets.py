"""Real libbpf targets and source trees for tests: had, or the test skipped with the reason.

- Targets come from ``oracle.libbpf.targets.resolve`` (releases built into the
  cache on first use; ``scripts/test`` prebuilds the ones the suite needs);
  ``target_or_skip`` and ``version_or_skip`` are the package's pytest plugin's
  (``oracle.pytest_plugin``), re-exported here.
- The tree behind a shipped table comes from the cache as well: Debian's
  releases from ``debsrc.source_tree`` (``apt-get source``, on first use).
  An upstream-only table records the commit it was generated from; its tree
  is used only when ``$SEC_ORACLE_UPSTREAM_TREES`` names a directory holding
  ``<version>/src/libbpf.c`` (libbpf at that commit), else the test is skipped
  saying so (CI has no upstream checkouts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

import pytest

from oracle.errors import LibbpfError
from oracle.libbpf import debsrc
from oracle.pytest_plugin import target_or_skip, version_or_skip
from oracle.tables import table_json

UPSTREAM_TREES: Final = "SEC_ORACLE_UPSTREAM_TREES"

__all__ = ["UPSTREAM_TREES", "table_tree_or_skip", "target_or_skip", "upstream_commit",
           "version_or_skip"]


def upstream_commit(version: str) -> str | None:
    """The upstream commit the shipped table of ``version`` records (None: a Debian source)."""
    commit = json.loads(table_json(version))["source"].get("upstream_commit")
    return str(commit) if commit else None


def table_tree_or_skip(version: str) -> Path:
    """The source tree the shipped table of ``version`` was generated from."""
    commit = upstream_commit(version)
    if commit is None:
        try:
            return debsrc.source_tree(version)
        except LibbpfError as exc:
            pytest.skip(f"Debian's libbpf {version} source unavailable: {exc}")
    root = os.environ.get(UPSTREAM_TREES)
    if not root:
        pytest.skip(f"upstream-only table, no tree at its recorded commit (${UPSTREAM_TREES} "
                    "not set; Debian ships no such source, CI has none)")
    tree = Path(root) / version
    if not (tree / "src" / "libbpf.c").is_file():
        pytest.skip(f"upstream-only table, no tree at its recorded commit "
                    f"(no {version}/src/libbpf.c in ${UPSTREAM_TREES})")
    return tree
