"""``struct libbpf_prog_handler_opts``: what libbpf reads of the caller's bytes.

Follows libbpf_internal.h ``OPTS_VALID`` / ``libbpf_validate_opts`` /
``OPTS_HAS`` / ``OPTS_GET`` (identical in 1.1.2, 1.4.6, 1.5.0 and 1.7.0) and the
first lines of ``libbpf_register_prog_handler``::

    if (!OPTS_VALID(opts, libbpf_prog_handler_opts))
            return libbpf_err(-EINVAL);
    ...
    sec_def->cookie = OPTS_GET(opts, cookie, 0);
    sec_def->prog_setup_fn = OPTS_GET(opts, prog_setup_fn, NULL);   /* and the other two */

Spec: "`opts`: optional cookie, callbacks, and other extra options".

Rules (each a function below):
- ``opts == NULL`` is valid and reads as all-zero (``opts_valid``, ``effective_opts``).
- Validation, in this order: ``sz < sizeof(size_t)`` (8) is invalid ("size (N)
  is too small"); otherwise the bytes from offset 40 (the struct's known size)
  up to ``sz`` must all be zero ("has non-zero extra bytes").  The length of
  that check is ``(ssize_t)sz - 40`` computed in ``size_t`` and read back as
  ``ssize_t`` (``oracle.ops.zero_check_len``): ``sz >= 2**63 + 40`` gives a
  negative length, nothing is checked, and such a ``sz`` is valid; ``sz`` in
  ``[2**63, 2**63 + 39]`` would scan ~2**63 bytes, which no caller's buffer
  holds, so ``HandlerOpts`` refuses it as a caller bug.
- A field is read only if it lies wholly inside ``sz``
  (``sz >= offsetofend(field)``); a partly covered field reads as 0/NULL, and
  bytes inside the struct beyond ``sz`` are never checked (``field_present``).
- Callback pointers are opaque: only NULL vs non-NULL matters to matching; the
  ``Callback`` objects travel with the handler so the lifecycle model can say
  which one runs with which cookie.

Invariant: ``effective_opts`` is only defined for valid opts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from oracle.errors import BadArgumentError
from oracle.ops import OPTS_STRUCT_SIZE, Callback, HandlerOpts, zero_check_len

SIZEOF_SIZE_T: Final = 8

#: offsetofend() of each field of struct libbpf_prog_handler_opts (x86-64 / LP64)
FIELD_END: Final[dict[str, int]] = {
    "sz": 8,
    "cookie": 16,
    "prog_setup_fn": 24,
    "prog_prepare_load_fn": 32,
    "prog_attach_fn": 40,
}


@dataclass(frozen=True, slots=True)
class EffectiveOpts:
    """What ``libbpf_register_prog_handler`` stores from valid opts."""

    cookie: int = 0
    prog_setup_fn: Callback | None = None
    prog_prepare_load_fn: Callback | None = None
    prog_attach_fn: Callback | None = None


NO_OPTS: Final = EffectiveOpts()


def opts_invalid_reason(opts: HandlerOpts | None) -> str | None:
    """Why ``OPTS_VALID`` rejects ``opts`` (libbpf's warning text), or None if valid."""
    if opts is None or (not opts.tail and opts.sz >= SIZEOF_SIZE_T):  # nothing to check
        return None
    if opts.sz < SIZEOF_SIZE_T:
        return f"libbpf_prog_handler_opts size ({opts.sz}) is too small"
    if any(opts.tail[: zero_check_len(opts.sz)]):
        return "libbpf_prog_handler_opts has non-zero extra bytes"
    return None


def opts_valid(opts: HandlerOpts | None) -> bool:
    """``OPTS_VALID(opts, libbpf_prog_handler_opts)``."""
    return opts_invalid_reason(opts) is None


def field_present(opts: HandlerOpts, name: str) -> bool:
    """``OPTS_HAS(opts, field)``: the field lies wholly inside ``opts->sz``."""
    return opts.sz >= FIELD_END[name]


def effective_opts(opts: HandlerOpts | None) -> EffectiveOpts:
    """``OPTS_GET`` of cookie and the three callbacks, with libbpf's fallbacks (0, NULL)."""
    if opts is None:
        return NO_OPTS
    if opts.sz >= OPTS_STRUCT_SIZE:  # every field present: the common case, kept fast
        return EffectiveOpts(opts.cookie, opts.prog_setup_fn, opts.prog_prepare_load_fn,
                             opts.prog_attach_fn)
    return EffectiveOpts(
        cookie=opts.cookie if field_present(opts, "cookie") else 0,
        prog_setup_fn=opts.prog_setup_fn if field_present(opts, "prog_setup_fn") else None,
        prog_prepare_load_fn=(
            opts.prog_prepare_load_fn if field_present(opts, "prog_prepare_load_fn") else None
        ),
        prog_attach_fn=opts.prog_attach_fn if field_present(opts, "prog_attach_fn") else None,
    )


_HEAD: Final = struct.Struct("<Qq3Q")


def parse_opts_bytes(raw: bytes) -> HandlerOpts:
    """Read the raw bytes of a ``struct libbpf_prog_handler_opts`` as a C caller passes them.

    The buffer must hold the 40-byte struct (shorter ones are padded with zeros,
    as a caller with an older header would have its struct zero-initialised by
    ``LIBBPF_OPTS``); bytes beyond 40 are the tail.  A non-NULL callback pointer
    becomes ``Callback(ret=0)``: the model never calls through it.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise BadArgumentError(f"opts bytes must be bytes, not {type(raw).__name__}")
    data = bytes(raw)
    if len(data) < SIZEOF_SIZE_T:
        raise BadArgumentError(
            f"opts bytes are {len(data)} long: libbpf reads sz, which needs at least 8"
        )
    head = data[:OPTS_STRUCT_SIZE].ljust(OPTS_STRUCT_SIZE, b"\0")
    sz, cookie, setup, prepare, attach = _HEAD.unpack(head)

    def callback(pointer: int) -> Callback | None:
        return Callback() if pointer else None

    return HandlerOpts(
        sz=sz,
        cookie=cookie,
        prog_setup_fn=callback(setup),
        prog_prepare_load_fn=callback(prepare),
        prog_attach_fn=callback(attach),
        tail=data[OPTS_STRUCT_SIZE:],
    )


def coerce_opts(value: object) -> HandlerOpts | None:
    """The ``opts`` argument of the public API: None, a ``HandlerOpts`` or raw bytes."""
    if value is None or isinstance(value, HandlerOpts):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return parse_opts_bytes(bytes(value))
    raise BadArgumentError(
        f"opts must be None, HandlerOpts or bytes, not {type(value).__name__}"
    )
