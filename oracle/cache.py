"""The on-disk cache every layer shares: where it is, and how writers serialise.

Rules:
- One root, ``cache_dir()``: ``$SEC_ORACLE_CACHE``, else
  ``$XDG_CACHE_HOME/libbpf-sec-oracle``, else ``~/.cache/libbpf-sec-oracle``.
  Each user of it owns one subdirectory (``src/`` Debian sources, ``build/``
  libbpf builds, ``tables/`` tables generated from source trees).
- Writers publish complete files or directories by atomic rename; concurrent
  writers of the same entry serialise on an exclusive ``flock`` (``locked``),
  so two runs sharing a cache never see half an entry.
- A cache directory that cannot be made (``$SEC_ORACLE_CACHE`` under a
  regular file, in ``/proc``, read-only) is one ``OracleError`` line naming
  it and the variable that moves it (``make_dir``; ``locked`` uses it).
- This module imports nothing of the project but its errors: the model's data
  (``oracle.tables``) and the libbpf layer both use it without depending on
  each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from oracle.errors import OracleError


def cache_dir() -> Path:
    """``$SEC_ORACLE_CACHE``, else ``$XDG_CACHE_HOME/libbpf-sec-oracle``, else ``~/.cache/...``."""
    explicit = os.environ.get("SEC_ORACLE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "libbpf-sec-oracle"


def _where() -> str:
    explicit = os.environ.get("SEC_ORACLE_CACHE")
    if explicit:
        return f"the cache is $SEC_ORACLE_CACHE={explicit}: point it at a writable directory"
    return f"the cache is {cache_dir()}: set SEC_ORACLE_CACHE to a writable directory"


def make_dir(path: Path) -> Path:
    """``mkdir -p path`` for a directory in the cache; a failure is one line (module rules)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OracleError(f"cannot create cache directory {path}: {exc.strerror}"
                          f" ({_where()})") from None
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), held for the block."""
    make_dir(path.parent)
    try:
        handle = open(path, "a+")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OracleError(f"cannot create lock file {path}: {exc.strerror} ({_where()})") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
