"""Name lookups: ``find_sec_def``, ``libbpf_prog_type_by_name``, ``libbpf_attach_type_by_name``.

Follows libbpf.c (identical in 1.1.2 through 1.7.0)::

    static const struct bpf_sec_def *find_sec_def(const char *sec_name)
    {       /* 1. custom handlers, in order */  /* 2. section_defs[], in order */
            /* 3. the fallback, if any */       return NULL; }

Spec: "All custom handlers (except the one with `sec` == `NULL`) are processed
before libbpf's own `SEC()` handlers."  "if `sec` is `NULL`, custom handler is
registered for any BPF program that doesn't match any of the registered
(custom or libbpf's own) `SEC()` handlers."

Rules:
- ``find_sec_def``: first matching custom handler, else first matching
  built-in, else the fallback, else nothing.  No '?' handling here: only
  ``bpf_object__open*`` strips a leading '?' from a program's section name, the
  two lookup functions take the name as given (docs/divergences.md, D9).
- ``Profile.sloppy_builtin_prefix`` (0.8.x): a plain built-in flagged
  ``SEC_SLOPPY_PFX`` matches every name it is a prefix of, at its place in the
  table (``sec_def_matches``' ``allow_sloppy``); custom handlers match as ever.
- ``libbpf_prog_type_by_name(name, &pt, &eat)``: NULL name -> -EINVAL; a match
  -> 0 and both outs written with the handler's values (custom values are
  returned unvalidated); no match -> -ESRCH.  On error the outs are untouched.
- ``libbpf_attach_type_by_name(name, &at)``: NULL name -> -EINVAL; no match ->
  -EINVAL; a match whose ``prog_prepare_load_fn`` is not libbpf's own
  ``libbpf_prepare_prog_load`` -> -EINVAL (every custom handler and the
  fallback: the function is static, so no application can pass it); a built-in
  without ``SEC_ATTACHABLE`` in its flags -> -EINVAL; else 0 and the out
  written.  A custom handler thus hides an attachable built-in (D6).

An ``Answer``'s ``out`` holds None where libbpf leaves an out-parameter untouched.
"""

from __future__ import annotations

import errno

from oracle.model.answers import answer
from oracle.model.registry import Handler, Registry
from oracle.model.versions import LIBBPF_PREPARE_PROG_LOAD, Profile
from oracle.ops import Answer, Name
from oracle.tables import SecDef

Match = Handler | SecDef


def find_sec_def(registry: Registry, release: Profile, name: bytes) -> Match | None:
    """The handler libbpf picks for ``name``: custom, then built-in, then fallback."""
    custom = registry.first_custom(name)
    if custom is not None:
        return custom
    builtin = release.builtins.first(name)
    if release.sloppy_builtin_prefix:  # SEC_SLOPPY_PFX: a prefix match, in table order
        for sec_def in release.sloppy_builtins:
            if builtin is not None and sec_def.index >= builtin.index:
                break
            if name.startswith(sec_def.sec):
                builtin = sec_def
                break
    return builtin or registry.fallback


def prog_type_by_name(registry: Registry, release: Profile, name: Name) -> Answer:
    """``libbpf_prog_type_by_name``: (0, prog_type, expected_attach_type), -EINVAL or -ESRCH."""
    if name is None:
        return answer(-errno.EINVAL, (None, None))
    match = find_sec_def(registry, release, name)
    if match is None:
        return answer(-errno.ESRCH, (None, None))
    return answer(0, (match.prog_type, match.expected_attach_type))


def is_attachable(release: Profile, match: Match) -> bool:
    """The two checks of ``libbpf_attach_type_by_name`` on a found sec_def."""
    if isinstance(match, Handler):
        return False  # its prog_prepare_load_fn is never libbpf_prepare_prog_load
    if match.prog_prepare_load_fn != LIBBPF_PREPARE_PROG_LOAD:
        return False
    return bool(match.cookie & release.sec_attachable)


def attach_type_by_name(registry: Registry, release: Profile, name: Name) -> Answer:
    """``libbpf_attach_type_by_name``: (0, expected_attach_type) or -EINVAL."""
    if name is None:
        return answer(-errno.EINVAL, (None,))
    match = find_sec_def(registry, release, name)
    if match is None or not is_attachable(release, match):
        return answer(-errno.EINVAL, (None,))
    return answer(0, (match.expected_attach_type,))
