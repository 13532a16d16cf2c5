"""Why a campaign ends before its budget, and the one flag every loop of it reads.

Rules:
- ``handling_signals()`` turns SIGINT, SIGTERM and SIGHUP into a stop
  request (``requested()`` names the signal) and does nothing else: no I/O,
  no exception, so no write is ever cut in half.  The campaign's loops
  (batches, fresh cases, shrinking, the job pool) read the flag and wind
  down within one batch; the report and JUnit are then written as for a run
  that spent its budget, marked ``interrupted``.
- A second signal while a stop is under way raises ``KeyboardInterrupt``
  (the user insists); ``finally`` blocks still close workers and temp dirs.
- An interrupted run exits ``128 + signal`` (130 for SIGINT, 143 for
  SIGTERM) whatever it found: the report says what it found until then.
- Processes the campaign starts for itself (job processes, libbpf workers)
  die with their parent (``die_with_parent``: ``PR_SET_PDEATHSIG``), so not
  even a SIGKILLed campaign leaves them running.
- ``request(reason)`` is the same stop from inside (a job's parent asking
  it to wind down, a test).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Final

#: the signals that stop a campaign gracefully
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG: Final = 1

_reason: str | None = None


def requested() -> str | None:
    """The signal's name (``"SIGINT"``) or reason a stop was asked for, or None."""
    return _reason


def request(reason: str) -> None:
    global _reason
    if _reason is None:
        _reason = reason


def reset() -> None:
    """Forget a stop request (a new campaign in the same process: tests)."""
    global _reason
    _reason = None


def exit_status(reason: str) -> int:
    """``128 + signal number`` for a signal's name, 1 for any other reason."""
    try:
        return 128 + int(signal.Signals[reason])
    except KeyError:
        return 1


def _on_signal(number: int, frame: FrameType | None) -> None:
    if _reason is not None:
        raise KeyboardInterrupt
    request(signal.Signals(number).name)


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Stop requests instead of signal deaths while the block runs (module rules)."""
    reset()
    previous = {number: signal.signal(number, _on_signal) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux);
    if the parent is already gone, exit now.  A no-op where prctl is missing."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # it went away before the request took
        os._exit(0)
