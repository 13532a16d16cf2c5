"""The naive reference matcher: libbpf's C, transliterated line by line.

``sec_def_matches`` and ``find_sec_def`` from libbpf.c, scanning every pattern
in order for every lookup.  The model never uses it: it exists so the tests can
prove the fast index in ``oracle.model.matching`` agrees with it on every name
and pattern list (tests/unit/test_matching.py, test_stateful.py), and so
``sec-oracle bench matcher`` can measure both side by side in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def c_sec_def_matches(sec: bytes, sec_name: bytes) -> bool:
    """libbpf.c sec_def_matches(), with C strings as bytes (len 0 reads sec[-1]: see below)."""
    length = len(sec)
    # sec[len - 1] for len == 0 reads the byte before the string (a libbpf bug);
    # unsanitized it is a malloc header byte, neither '/' nor '+'.
    last = sec[length - 1 : length] if length else b"\0"
    if last == b"/":
        return sec_name.startswith(sec)
    if last == b"+":
        length -= 1
        if sec_name[:length] != sec[:length]:
            return False
        nxt = sec_name[length : length + 1]
        return nxt in (b"", b"/")
    return sec_name == sec


def c_find_sec_def(
    custom: Sequence[tuple[bytes, T]],
    builtins: Sequence[tuple[bytes, T]],
    fallback: T | None,
    sec_name: bytes,
) -> T | None:
    """libbpf.c find_sec_def(): custom in order, then section_defs[], then the fallback."""
    for sec, entry in custom:
        if c_sec_def_matches(sec, sec_name):
            return entry
    for sec, entry in builtins:
        if c_sec_def_matches(sec, sec_name):
            return entry
    return fallback
