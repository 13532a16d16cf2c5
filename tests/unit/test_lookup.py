"""find_sec_def, libbpf_prog_type_by_name, libbpf_attach_type_by_name (oracle.model.lookup)."""

from __future__ import annotations

import errno

import pytest

from oracle import Oracle
from oracle.tables import known_versions, load_table

T = load_table("1.7.0")
KPROBE = T.prog_types["BPF_PROG_TYPE_KPROBE"]
SOCKET = T.prog_types["BPF_PROG_TYPE_SOCKET_FILTER"]
CONNECT4 = T.attach_types["BPF_CGROUP_INET4_CONNECT"]


@pytest.fixture(params=known_versions())
def o(request: pytest.FixtureRequest) -> Oracle:
    return Oracle(request.param)


def test_builtins(o: Oracle) -> None:
    assert o.prog_type_by_name("kprobe/do_sys_open") == (0, KPROBE, 0)
    assert o.prog_type_by_name("kprobe") == (0, KPROBE, 0)
    assert o.prog_type_by_name("socket") == (0, SOCKET, 0)
    if o.release.sloppy_builtin_prefix:  # 0.8.x: SEC_SLOPPY_PFX built-ins match prefixes
        assert o.prog_type_by_name("socket/x") == (0, SOCKET, 0)
        assert o.prog_type_by_name("socketx") == (0, SOCKET, 0)
    else:
        assert o.prog_type_by_name("socket/x")[0] == -errno.ESRCH  # plain built-in
    assert o.attach_type_by_name("cgroup/connect4") == (0, CONNECT4)


def test_sloppy_prefix_keeps_table_order() -> None:
    o = Oracle("0.8.3")
    # "cgroup/sock" is SEC_SLOPPY_PFX, but "cgroup/sock_create" comes first in the table
    assert o.prog_type_by_name("cgroup/sock_createx") == o.prog_type_by_name("cgroup/sock_create")
    assert o.attach_type_by_name("sk_lookup.") == o.attach_type_by_name("sk_lookup")
    assert o.prog_type_by_name("kprobex")[0] == -errno.ESRCH  # "kprobe+" is not sloppy
    o.register_prog_handler("socket", 99, 0)  # custom handlers are never sloppy
    assert o.prog_type_by_name("socketx") == (0, SOCKET, 0)
    assert o.prog_type_by_name("socket") == (0, 99, 0)
    assert Oracle("1.0.3").prog_type_by_name("socketx")[0] == -errno.ESRCH


def test_null_name_is_einval(o: Oracle) -> None:
    assert o.prog_type_by_name(None) == (-errno.EINVAL, 0, 0)
    assert o.attach_type_by_name(None) == (-errno.EINVAL, 0)


def test_unknown_name(o: Oracle) -> None:
    assert o.prog_type_by_name("no_such_section") == (-errno.ESRCH, 0, 0)
    assert o.attach_type_by_name("no_such_section") == (-errno.EINVAL, 0)


def test_not_attachable_builtin(o: Oracle) -> None:
    assert o.attach_type_by_name("kprobe/x") == (-errno.EINVAL, 0)


def test_custom_before_builtin(o: Oracle) -> None:
    o.register_prog_handler("kprobe+", 99, 7)
    assert o.prog_type_by_name("kprobe/x") == (0, 99, 7)
    assert o.prog_type_by_name("kretprobe/x") == (0, KPROBE, 0)


def test_custom_order_is_registration_order(o: Oracle) -> None:
    o.register_prog_handler("abc/", 1, 0)
    o.register_prog_handler("abc+", 2, 0)
    assert o.prog_type_by_name("abc/x") == (0, 1, 0)
    assert o.prog_type_by_name("abc") == (0, 2, 0)


def test_fallback_comes_after_builtins(o: Oracle) -> None:
    o.register_prog_handler(None, 42, 3)
    assert o.prog_type_by_name("socket") == (0, SOCKET, 0)
    assert o.prog_type_by_name("anything") == (0, 42, 3)
    assert o.attach_type_by_name("anything") == (-errno.EINVAL, 0)


def test_custom_handlers_are_never_attachable(o: Oracle) -> None:
    o.register_prog_handler("cgroup/connect4", 18, CONNECT4)
    assert o.attach_type_by_name("cgroup/connect4") == (-errno.EINVAL, 0)


def test_question_mark_is_not_stripped_by_lookups(o: Oracle) -> None:
    assert o.prog_type_by_name("?socket")[0] == -errno.ESRCH


def test_find_sec_def_names_the_handler(o: Oracle) -> None:
    hid = o.register_prog_handler("abc", 1, 0)
    handler = o.find_sec_def("abc")
    assert handler is not None and getattr(handler, "handler_id", None) == hid
    builtin = o.find_sec_def("socket")
    assert builtin is not None and getattr(builtin, "index", None) == 0
