"""The on-disk cache every layer shares: where it is, and how writers serialise.

Rules:
- One root, ``cache_dir()``: ``$SEC_ORACLE_CACHE``, else
  ``$XDG_CACHE_HOME/libbpf-sec-oracle``, else ``~/.cache/libbpf-sec-oracle``.
  Each user of it owns one subdirectory (``src/`` Debian sources, ``build/``
  libbpf builds, ``tables/`` tables generated from source trees).
- Writers publish complete files or directories by atomic rename; concurrent
  writers of the same entry serialise on an exclusive ``flock`` (``locked``),
  so two runs sharing a cache never see half an entry.
- This module imports nothing of the project: the model's data (``oracle.tables``)
  and the libbpf layer both use it without depending on each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """``$SEC_ORACLE_CACHE``, else ``$XDG_CACHE_HOME/libbpf-sec-oracle``, else ``~/.cache/...``."""
    explicit = os.environ.get("SEC_ORACLE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "libbpf-sec-oracle"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
