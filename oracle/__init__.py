"""libbpf-sec-oracle: a model of libbpf's custom SEC() handler registry, and harnesses around it.

``Oracle(version)`` mirrors the C API one to one::

    from oracle import Oracle
    o = Oracle("1.7.0")
    hid = o.register_prog_handler("abc+", 2, 0)        # id > 0, or -errno
    rc, prog_type, attach_type = o.prog_type_by_name("abc/x")

The re-export is lazy so that ``oracle.errors`` & co. import without loading the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oracle.errors import BadArgumentError, OracleError, UnknownVersionError

if TYPE_CHECKING:
    from oracle.model.oracle import Oracle

__all__ = ["BadArgumentError", "Oracle", "OracleError", "UnknownVersionError"]


def __getattr__(name: str) -> Any:
    if name == "Oracle":
        from oracle.model.oracle import Oracle

        return Oracle
    raise AttributeError(f"module 'oracle' has no attribute {name!r}")
