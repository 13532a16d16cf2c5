"""Tables of source trees (a user's checkout, a patched release), generated at run time.

Rules:
- A tree's table is what ``oracle.tables.generate`` makes of its own
  ``src/libbpf.c`` and ``include/uapi/linux/bpf.h``: nothing is taken from a
  shipped release's table, so an entry a tree adds, drops or changes is the
  tree's.
- Cached by the sha256 of those two files (``parsed_hash``) under
  ``<cache>/tables/<hash16>.json``, written whole by atomic rename; a cache
  file that fails the table checks is regenerated, never trusted.
- A tree the generator cannot read exactly is one line (``SourceParseError``
  names the construct and, where it has one, the line) as an ``OracleError``.
- The table's ``version`` is the release the tree builds
  (``sourcetree.release_of``); ``debian_version`` is None; the document's
  ``source`` says which tree and which hash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from oracle import sourcetree
from oracle.cache import cache_dir, locked
from oracle.errors import OracleError
from oracle.tables import Table, table_from_document
from oracle.tables.generate import BPF_H, LIBBPF_C, SourceParseError, build_table, dump


def parsed_hash(tree: Path) -> str:
    """sha256 over the two files a table is generated from."""
    digest = hashlib.sha256()
    for relative in (LIBBPF_C, BPF_H):
        try:
            digest.update(hashlib.sha256((tree / relative).read_bytes()).hexdigest().encode())
        except OSError as exc:
            raise OracleError(f"{tree} has no readable {relative} ({exc.strerror})") from None
    return digest.hexdigest()


def tree_document(tree: Path) -> dict[str, Any]:
    """The data document of ``tree`` (generated or from the cache)."""
    sha = parsed_hash(tree)
    cached = cache_dir() / "tables" / f"{sha[:16]}.json"
    document = _read(cached)
    if document is not None:
        return document
    with locked(cached.parent / f".{cached.name}.lock"):
        document = _read(cached)
        if document is not None:
            return document
        document = _generate(tree, sha)
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=cached.parent, prefix=f".{cached.name}-")
        with os.fdopen(fd, "w") as out:
            out.write(dump(document) + "\n")
        os.replace(staging, cached)
    return document


def _generate(tree: Path, sha: str) -> dict[str, Any]:
    release = sourcetree.release_of(tree)
    try:
        document = build_table(release, tree, None, None)
    except (SourceParseError, OSError) as exc:
        raise OracleError(f"cannot read the built-in table of {tree}: {exc}") from None
    document["source"]["tree"] = str(tree)
    document["source"]["tree_sha256"] = sha
    table_from_document(document, str(tree))  # the same checks as shipped data
    return document


def _read(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        document: dict[str, Any] = json.loads(path.read_text())
        table_from_document(document, str(path))
        return document
    return None


@functools.cache
def _table(tree: Path, sha: str) -> Table:
    table = table_from_document(tree_document(tree), str(tree))
    # the cached document names the tree that first generated it; this is ``tree``
    return dataclasses.replace(table, origin=f"tree {tree} (source {sha[:12]})")


def tree_table(tree: Path) -> Table:
    """The table of the libbpf source tree ``tree`` in its current state."""
    return _table(tree.absolute(), parsed_hash(tree))
