"""OPTS_VALID / OPTS_GET of struct libbpf_prog_handler_opts (oracle.model.opts)."""

from __future__ import annotations

import errno

import pytest

from oracle import BadArgumentError, Oracle
from oracle.model.opts import (
    effective_opts,
    opts_invalid_reason,
    parse_opts_bytes,
)
from oracle.ops import Callback, HandlerOpts, zero_check_len

CB = Callback(ret=0)


@pytest.mark.parametrize("sz", [0, 1, 7])
def test_sz_below_size_t_is_invalid(sz: int) -> None:
    assert opts_invalid_reason(HandlerOpts(sz=sz)) == (
        f"libbpf_prog_handler_opts size ({sz}) is too small"
    )
    assert Oracle("1.7.0").register_prog_handler("abc", 0, 0, HandlerOpts(sz=sz)) == -errno.EINVAL


def test_nonzero_tail_within_sz_is_invalid() -> None:
    opts = HandlerOpts(sz=48, tail=b"\0" * 7 + b"\1")
    assert opts_invalid_reason(opts) == "libbpf_prog_handler_opts has non-zero extra bytes"


def test_zero_tail_is_valid_and_tail_beyond_sz_is_not_read() -> None:
    assert opts_invalid_reason(HandlerOpts(sz=48, tail=b"\0" * 8)) is None
    assert opts_invalid_reason(HandlerOpts(sz=40, tail=b"\xff" * 8)) is None


def test_sz_from_2_63_plus_40_skips_the_tail_check() -> None:
    # (ssize_t)sz - 40, computed in size_t, reads back negative: nothing is checked.
    assert zero_check_len(2**64 - 1) == 0
    assert zero_check_len(5) == 0
    assert opts_invalid_reason(HandlerOpts(sz=2**63 + 40, tail=b"\1" * 8)) is None


@pytest.mark.parametrize("sz", [2**63, 2**63 + 39])
def test_sz_just_above_2_63_would_scan_past_any_buffer(sz: int) -> None:
    # (sz - 40) mod 2**64 is a huge positive length: libbpf reads ~2**63 bytes.
    assert zero_check_len(sz) >= 2**63 - 40
    with pytest.raises(BadArgumentError, match="past the caller's buffer"):
        HandlerOpts(sz=sz, tail=b"\0" * 8)


def test_fields_are_read_only_when_wholly_inside_sz() -> None:
    opts = HandlerOpts(sz=20, cookie=7, prog_setup_fn=CB, prog_prepare_load_fn=CB)
    eff = effective_opts(opts)
    assert eff.cookie == 7
    assert eff.prog_setup_fn is None  # ends at 24 > 20
    assert effective_opts(HandlerOpts(sz=12, cookie=7)).cookie == 0
    assert effective_opts(HandlerOpts(sz=40, prog_attach_fn=CB)).prog_attach_fn is CB


def test_raw_bytes_parse_like_a_c_caller() -> None:
    raw = HandlerOpts(sz=48, cookie=-3, tail=b"\0" * 8).to_bytes((0, 0x1000, 0))
    opts = parse_opts_bytes(raw)
    assert (opts.sz, opts.cookie) == (48, -3)
    assert opts.prog_setup_fn is None and opts.prog_prepare_load_fn is not None
    assert Oracle("1.7.0").register_prog_handler(b"abc", 1, 2, raw) == 1


def test_buffer_shorter_than_sz_is_a_caller_bug() -> None:
    with pytest.raises(BadArgumentError, match="past the caller's buffer"):
        parse_opts_bytes(HandlerOpts().to_bytes()[:8].replace(b"\x28", b"\x30", 1))
    with pytest.raises(BadArgumentError):
        parse_opts_bytes(b"\x08")


def test_opts_of_a_wrong_type_is_a_domain_error() -> None:
    with pytest.raises(BadArgumentError, match="opts must be"):
        Oracle("1.7.0").register_prog_handler("abc", 0, 0, {"sz": 40})
