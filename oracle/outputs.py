"""Files a user names for output (``check --report/--junit``, ``record --out``'s traces).

Rules:
- Checked before the work that produces them (``check_output_file``,
  ``check_distinct``): a path that exists must be a regular file (not a
  symlink, directory, FIFO, socket or device; writing by rename would replace
  ``/dev/null`` with a regular file), its directory must exist and be
  writable, and two outputs of one command never name the same file.  Each
  refusal is one ``OracleError`` line.
- Written atomically (``atomic_write``): a temp file in the target's
  directory, mode ``0666 & ~umask`` as ``open()`` would create it (not
  ``mkstemp``'s 0600, ``temp_beside``), fsynced, renamed over the target;
  after a failure (a full disk) no temp file is left.
- This module imports nothing of the project but its errors.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from oracle.errors import OracleError

#: what ``stat`` calls each kind of file an output may not be
_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def not_regular(path: Path) -> str | None:
    """What ``path`` is if it exists and is not a regular file ("a FIFO"), else None."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OracleError(f"cannot use {path}: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_output_file(path: Path, what: str) -> None:
    """Fail early when ``what`` (e.g. "report") could not be written to ``path`` as a file."""
    kind = not_regular(path)
    if kind is not None:
        raise OracleError(f"{what} path {path} is {kind}, not a regular file:"
                          " name a new or regular file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OracleError(f"{what} directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OracleError(f"{what} directory {parent} is not writable")


def check_distinct(outputs: dict[str, Path | None]) -> None:
    """Two outputs (by option name) never name one file, whatever the spelling."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise OracleError(f"{seen[key]} and {option} name the same file {path}:"
                              " give each its own")
        seen[key] = option


def temp_beside(target: Path) -> tuple[int, str]:
    """``mkstemp`` in ``target``'s directory, with the mode ``open()`` would give a new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (module rules); an ``OSError`` is one line."""
    kind = not_regular(path)  # again: it may have changed while the work ran
    if kind is not None:
        raise OracleError(f"cannot write {path}: it is {kind} now, not a regular file")
    tmp = None
    try:
        fd, tmp = temp_beside(path)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise OracleError(f"cannot write {path}: {exc.strerror or exc}") from None
