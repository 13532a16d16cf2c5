"""Compiling the C this project writes: repro.c, bench's C column, the C fuzz harness.

Rules:
- ``compiler(names)`` is the first of ``names`` on PATH, or None; callers
  say which they prefer (libFuzzer needs clang; clang is several times faster
  than gcc on the long generated programs; repro.c is plain C for any cc).
- ``require(names)`` and ``require_libbpf_h()`` are the same checks failing
  as one-line ``OracleError`` s naming what to install.
- ``compile_c(argv, what)`` runs one compiler command.  A failure, a
  compiler that cannot be started and a timeout are each an ``OracleError``
  ``"<what> failed: <the compiler's last line of output>"`` (its summary
  line; the first error is usually far above), never a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from oracle.errors import OracleError

#: libbpf-dev's header: every generated program includes it
LIBBPF_H: Final = Path("/usr/include/bpf/libbpf.h")


def compiler(names: Sequence[str] = ("clang", "cc")) -> str | None:
    return next((name for name in names if shutil.which(name)), None)


def require(names: Sequence[str] = ("clang", "cc")) -> str:
    found = compiler(names)
    if found is None:
        raise OracleError(f"no C compiler ({' or '.join(names)})")
    return found


def require_libbpf_h() -> None:
    if not LIBBPF_H.exists():
        raise OracleError(f"no {LIBBPF_H} (apt-get install libbpf-dev)")


def compile_c(argv: Sequence[str], what: str, *, cwd: Path | None = None,
              timeout: float | None = None) -> None:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OracleError(f"{what} failed: no result after {timeout:.0f} s") from None
    except OSError as exc:
        raise OracleError(f"{what} failed: {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise OracleError(f"{what} failed: {last}")
