"""Handler ids, the fallback and unregister (oracle.model.registry)."""

from __future__ import annotations

import errno

import pytest

from oracle import BadArgumentError, Oracle
from oracle.ops import INT_MAX, HandlerOpts


@pytest.fixture
def o() -> Oracle:
    return Oracle("1.7.0")


def test_first_id_is_one_and_ids_increase(o: Oracle) -> None:
    assert [o.register_prog_handler(s, 0, 0) for s in ("a", "b", None, "a")] == [1, 2, 3, 4]


def test_ids_are_never_reused(o: Oracle) -> None:
    first = o.register_prog_handler("a", 0, 0)
    assert o.unregister_prog_handler(first) == 0
    assert o.register_prog_handler("a", 0, 0) == first + 1


def test_failed_calls_consume_no_id(o: Oracle) -> None:
    assert o.register_prog_handler(None, 0, 0) == 1
    assert o.register_prog_handler(None, 0, 0) == -errno.EBUSY
    assert o.register_prog_handler("a", 0, 0, HandlerOpts(sz=0)) == -errno.EINVAL
    assert o.register_prog_handler("a", 0, 0) == 2


def test_e2big_at_int_max() -> None:
    o = Oracle("1.7.0", last_handler_id=INT_MAX - 1)
    assert o.register_prog_handler("a", 0, 0) == INT_MAX
    assert o.register_prog_handler("b", 0, 0) == -errno.E2BIG
    assert o.register_prog_handler(None, 0, 0) == -errno.E2BIG
    # checks run in libbpf's order: OPTS_VALID before the id check
    assert o.register_prog_handler("b", 0, 0, HandlerOpts(sz=1)) == -errno.EINVAL
    assert o.unregister_prog_handler(INT_MAX) == 0
    assert o.register_prog_handler("b", 0, 0) == -errno.E2BIG  # the counter never goes back


def test_e2big_comes_before_ebusy() -> None:
    o = Oracle("1.7.0", last_handler_id=INT_MAX - 1)
    assert o.register_prog_handler(None, 0, 0) == INT_MAX
    assert o.register_prog_handler(None, 0, 0) == -errno.E2BIG


def test_one_fallback_at_a_time(o: Oracle) -> None:
    fb = o.register_prog_handler(None, 1, 0)
    assert o.register_prog_handler(None, 2, 0) == -errno.EBUSY
    assert o.unregister_prog_handler(fb) == 0
    assert o.register_prog_handler(None, 2, 0) == fb + 1


@pytest.mark.parametrize("bad", [0, -1, -(2**31)])
def test_unregister_rejects_non_positive_ids(o: Oracle, bad: int) -> None:
    assert o.unregister_prog_handler(bad) == -errno.EINVAL


def test_unregister_unknown_and_twice(o: Oracle) -> None:
    hid = o.register_prog_handler("a", 0, 0)
    assert o.unregister_prog_handler(hid + 1) == -errno.ENOENT
    assert o.unregister_prog_handler(hid) == 0
    assert o.unregister_prog_handler(hid) == -errno.ENOENT


def test_unregister_keeps_the_order_of_the_rest(o: Oracle) -> None:
    ids = [o.register_prog_handler(s, i, 0) for i, s in enumerate(["x+", "x/", "x"])]
    assert o.unregister_prog_handler(ids[1]) == 0
    assert [h.sec for h in o.custom_handlers()] == [b"x+", b"x"]
    assert o.prog_type_by_name("x/y") == (0, 0, 0)


def test_duplicates_are_allowed_and_the_first_wins(o: Oracle) -> None:
    first = o.register_prog_handler("abc", 10, 0)
    o.register_prog_handler("abc", 20, 0)
    assert o.prog_type_by_name("abc") == (0, 10, 0)
    o.unregister_prog_handler(first)
    assert o.prog_type_by_name("abc") == (0, 20, 0)


def test_types_are_not_validated(o: Oracle) -> None:
    o.register_prog_handler("abc", -1, 2**32 - 1)
    assert o.prog_type_by_name("abc") == (0, 2**32 - 1, 2**32 - 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 0, 0), "sec must be str, bytes or None"),
        (("a", "x", 0), "prog_type must be an int"),
        (("a", 0, 2**32), "does not fit a 32-bit C enum"),
        (("a", True, 0), "prog_type must be an int"),
    ],
)
def test_bad_arguments_are_domain_errors(o: Oracle, args: tuple[object, ...], message: str) -> None:
    with pytest.raises(BadArgumentError, match=message):
        o.register_prog_handler(*args)


def test_unregister_needs_a_c_int(o: Oracle) -> None:
    with pytest.raises(BadArgumentError, match="does not fit a C int"):
        o.unregister_prog_handler(2**31)


def test_bad_counter_start() -> None:
    with pytest.raises(BadArgumentError):
        Oracle("1.7.0", last_handler_id=-1)
