"""Domain errors of libbpf-sec-oracle.

Rules:
- Every error a user can provoke with bad input (a wrong type, an unknown
  version, a corrupt trace, a missing library) is an ``OracleError`` with a
  one-line message that says what is wrong and, where it can, how to fix it.
- The CLI turns an ``OracleError`` into ``sec-oracle: error: <message>`` and
  exit status 2; anything else escaping is a bug of this tool.
"""

from __future__ import annotations


class OracleError(Exception):
    """Base class: bad input or environment, reported in one line."""

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed.
        super().__init__(" ".join(str(message).split()))


class UnknownVersionError(OracleError, ValueError):
    """A libbpf version the oracle has no built-in table for."""


class BadArgumentError(OracleError, TypeError):
    """An argument of the wrong type or out of the C type's range."""


class LibbpfError(OracleError):
    """A libbpf target that cannot be found, built or loaded."""


class TraceError(OracleError):
    """A trace file that is unreadable, corrupt or of an unknown format."""
