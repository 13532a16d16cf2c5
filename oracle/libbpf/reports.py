"""Reading a dead process's stderr: sanitizer reports, stack frames, how it died.

Rules and invariants:
- Every death becomes a ``CrashEvent`` (``oracle.libbpf.worker``): ``hang``;
  ``crash`` when a signal killed the copy or a sanitizer report is in what it
  wrote to stderr; ``exit`` otherwise (``classify``).
"""

from __future__ import annotations

import os
import re
from typing import Final, Literal, TypeAlias

MAX_FRAMES: Final = 16

CrashKind: TypeAlias = Literal["crash", "hang", "exit"]


_ASAN_ERROR = re.compile(r"ERROR: AddressSanitizer: (?:attempting )?([\w-]+)(.*)")
_UBSAN_SUMMARY = re.compile(r"SUMMARY: UndefinedBehaviorSanitizer: ([\w-]+)")
_RUNTIME_ERROR = re.compile(r"\S+: runtime error: .*")
_FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ +(?:in (\S+)(?: (\S+))?|\((\S+)\))", re.MULTILINE)


def sanitizer_kind(text: str) -> tuple[str | None, str | None]:
    """``(kind, first report line)`` of the first ASan or UBSan report in ``text``."""
    asan = _ASAN_ERROR.search(text)
    if asan:
        return asan.group(1), asan.group(0).strip()
    runtime = _RUNTIME_ERROR.search(text)
    ubsan = _UBSAN_SUMMARY.search(text)
    if ubsan or runtime:
        kind = ubsan.group(1) if ubsan else "undefined-behavior"
        return kind, runtime.group(0).strip() if runtime else None
    return None, None


def stack_frames(text: str, limit: int = MAX_FRAMES) -> tuple[str, ...]:
    """The first stack trace in ``text`` as ``"func file:line:col"`` strings."""
    frames: list[str] = []
    for match in _FRAME.finditer(text):
        if match.group(1) == "0" and frames:
            break
        func, where, module = match.group(2), match.group(3), match.group(4)
        if func and where and where.startswith("("):
            frames.append(f"{func} ({os.path.basename(where.strip('()'))})")
        elif func:
            frames.append(f"{func} {os.path.basename(where)}" if where else func)
        else:
            frames.append(f"? ({os.path.basename(module)})")
        if len(frames) == limit:
            break
    return tuple(frames)


def last_line(text: str) -> str | None:
    """The last non-empty line of ``text`` (glibc's abort message, if any)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def classify(
    returncode: int | None, hung: bool, stderr: str
) -> tuple[CrashKind, int | None, int | None, str | None, str | None]:
    """``(kind, signal, exit_code, sanitizer, message)`` of a dead child."""
    sanitizer, message = sanitizer_kind(stderr)
    sig = -returncode if returncode is not None and returncode < 0 else None
    code = returncode if returncode is not None and returncode >= 0 else None
    if hung:
        return "hang", sig, code, sanitizer, message
    if sanitizer is None:
        message = last_line(stderr)
    kind: CrashKind = "crash" if sig is not None or sanitizer is not None else "exit"
    return kind, sig, code, sanitizer, message
