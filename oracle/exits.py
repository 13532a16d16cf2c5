"""How a process ended, in the words reports and signatures use.

Rules:
- ``signal_name(n)`` is the signal's name (``"SIGSEGV"``), or ``"SIG<n>"``
  for a number Python does not name: signatures carry it, so it never
  depends on anything but ``n``.
- ``describe_exit(status)`` takes a ``Popen.returncode``-style status
  (negative: killed by that signal; None: still running) and says it as a
  phrase: ``"killed by SIGKILL"``, ``"exited with status 2"``,
  ``"did not end"``.
"""

from __future__ import annotations

import signal


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def describe_exit(status: int | None) -> str:
    if status is None:
        return "did not end"
    if status < 0:
        return f"killed by {signal_name(-status)}"
    return f"exited with status {status}"
