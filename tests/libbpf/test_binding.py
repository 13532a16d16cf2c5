"""The cffi binding against real libbpf, loaded into the test process (plain builds only).

libbpf's registry is process-global and outlives each test, so every library
gets one "keeper" registration first that is never unregistered: on 1.1.2,
emptying the registry corrupts the heap (see test_worker.py), which must not
happen to pytest's own process.  Handler ids are therefore checked relative
to each other, never absolutely (the worker tests do that in fresh processes).
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from oracle.errors import LibbpfError
from oracle.libbpf.binding import CANARIES, Libbpf, LogLine, ffi
from oracle.libbpf.child import Session, execute, run_inprocess
from oracle.ops import (
    Answer,
    AttachTypeByName,
    Callback,
    CallbackCall,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)

pytestmark = pytest.mark.libbpf

BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_XDP = 6
BPF_CGROUP_INET4_CONNECT = 10
BPF_XDP = 37

_loaded: dict[str, Libbpf] = {}
_registrations: dict[str, int] = {}


def load(spec: str) -> Libbpf:
    """One ``Libbpf`` per spec for the whole session, with its keeper registered."""
    if spec not in _loaded:
        from oracle.libbpf.targets import resolve

        try:
            target = resolve(spec)
        except LibbpfError as exc:
            pytest.skip(f"libbpf {spec} unavailable: {exc}")
        lib = Libbpf(target.path)
        assert lib.register(b"keeper_that_never_matches", 1, 0, None, 0) > 0
        _loaded[spec], _registrations[spec] = lib, 1
    return _loaded[spec]


def next_registration(spec: str) -> int:
    _registrations[spec] += 1
    return _registrations[spec] - 1


@pytest.fixture(params=["system", "1.7.0"])
def spec(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def lib(spec: str) -> Libbpf:
    library = load(spec)
    library.log.clear()
    library.calls.clear()
    return library


def test_version(spec: str, lib: Libbpf) -> None:
    expected = {"system": "v1.1", "1.7.0": "v1.7"}[spec]
    assert lib.version() == expected
    assert lib.major_minor() == tuple(int(x) for x in expected[1:].split("."))


def test_prog_type_by_name_kprobe(lib: Libbpf) -> None:
    assert lib.prog_type_by_name(b"kprobe/foo") == (0, (BPF_PROG_TYPE_KPROBE, 0))


def test_attach_type_by_name(lib: Libbpf) -> None:
    assert lib.attach_type_by_name(b"cgroup/connect4") == (0, (BPF_CGROUP_INET4_CONNECT,))
    assert lib.attach_type_by_name(b"xdp") == (0, (BPF_XDP,))


def test_unknown_name_leaves_outs_untouched_and_logs(lib: Libbpf) -> None:
    assert lib.prog_type_by_name(b"no_such_sec") == (-errno.ESRCH, (None, None))
    assert lib.log[0] == LogLine(
        2, "libbpf: failed to guess program type from ELF section 'no_such_sec'"
    )
    assert lib.log[1].text.startswith("libbpf: supported section(type) names are: socket ")
    lib.log.clear()
    assert lib.attach_type_by_name(b"no_such_sec") == (-errno.EINVAL, (None,))
    assert "failed to guess attach type based on ELF section name" in lib.log[0].text


def test_null_name(lib: Libbpf) -> None:
    assert lib.prog_type_by_name(None) == (-errno.EINVAL, (None, None))
    assert lib.attach_type_by_name(None) == (-errno.EINVAL, (None,))


def test_written_canary_value_is_not_mistaken_for_untouched(spec: str, lib: Libbpf) -> None:
    registration = next_registration(spec)
    assert lib.register(b"canary_sec", CANARIES[0], CANARIES[0], None, registration) > 0
    assert lib.prog_type_by_name(b"canary_sec") == (0, (CANARIES[0], CANARIES[0]))
    assert lib.log == []  # the repeated call's log lines are dropped


def test_opts_too_small(lib: Libbpf) -> None:
    assert lib.register(b"small_sz", 2, 0, HandlerOpts(sz=4), 99) == -errno.EINVAL
    assert lib.log == [LogLine(0, "libbpf: libbpf_prog_handler_opts size (4) is too small")]


def test_opts_nonzero_tail(lib: Libbpf) -> None:
    opts = HandlerOpts(sz=48, tail=b"\1" + bytes(7))
    assert lib.register(b"tail_sec", 2, 0, opts, 99) == -errno.EINVAL
    assert lib.log == [LogLine(0, "libbpf: libbpf_prog_handler_opts has non-zero extra bytes")]


def test_register_unregister_relative_ids(spec: str, lib: Libbpf) -> None:
    first = lib.register(b"rel_a", 2, 0, None, next_registration(spec))
    second = lib.register(b"rel_b+", 2, 0, None, next_registration(spec))
    assert second == first + 1
    assert lib.prog_type_by_name(b"rel_b/x") == (0, (2, 0))
    assert lib.unregister(second) == 0
    assert lib.unregister(second) == -errno.ENOENT
    assert lib.unregister(first) == 0
    assert lib.unregister(0) == -errno.EINVAL


def test_run_inprocess_shares_execute(spec: str, lib: Libbpf) -> None:
    session = Session(lib)
    ops: list[Op] = [
        Register(b"inproc/", BPF_PROG_TYPE_XDP, BPF_XDP),
        ProgTypeByName(b"inproc/x"),
        AttachTypeByName(b"inproc/x"),
        Unregister(0),
    ]
    results = run_inprocess(session, ops)
    hid = results[0].answer.rc
    assert hid > 0 and session.register_results == [hid]
    assert results[1].answer == Answer(0, (BPF_PROG_TYPE_XDP, BPF_XDP))
    assert results[2].answer == Answer(-errno.EINVAL, (None,))  # custom defs are not attachable
    assert execute(session, Unregister(hid))[0] == 0


BPF_SOURCE = """
__attribute__((section("sotest_custom/foo"), used)) int my_prog(void *ctx) { return 0; }
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


@pytest.fixture(scope="module")
def bpf_object(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("clang") is None:
        pytest.skip("clang is needed to compile a BPF object")
    work: Path = tmp_path_factory.mktemp("bpf")
    (work / "p.c").write_text(BPF_SOURCE)
    subprocess.run(
        ["clang", "-target", "bpf", "-O2", "-c", "p.c", "-o", "p.o"], cwd=work, check=True
    )
    return (work / "p.o").read_bytes()


def test_prog_setup_fn_recorded_when_object_opens(
    spec: str, lib: Libbpf, bpf_object: bytes
) -> None:
    registration = next_registration(spec)
    opts = HandlerOpts(cookie=42, prog_setup_fn=Callback(0), prog_prepare_load_fn=Callback(0))
    hid = lib.register(b"sotest_custom/", BPF_PROG_TYPE_KPROBE, 0, opts, registration)
    assert hid > 0
    try:
        obj, err = lib.open_mem(bpf_object)
        assert err == 0
        assert lib.calls == [
            CallbackCall("prog_setup_fn", registration, b"my_prog", b"sotest_custom/foo", 42, 0)
        ]
        (prog,) = lib.programs(obj)
        assert lib.prog_name(prog) == b"my_prog"
        assert lib.prog_section(prog) == b"sotest_custom/foo"
        assert lib.prog_type(prog) == BPF_PROG_TYPE_KPROBE
        assert lib.prog_expected_attach_type(prog) == 0
        assert lib.prog_autoload(prog) is True
        assert lib.prog_set_autoload(prog, False) == 0
        assert lib.prog_autoload(prog) is False
        assert lib.prog_set_type(prog, BPF_PROG_TYPE_XDP) == 0
        assert lib.prog_type(prog) == BPF_PROG_TYPE_XDP
        lib.close(obj)
    finally:
        assert lib.unregister(hid) == 0


def test_setup_fn_error_fails_open(spec: str, lib: Libbpf, bpf_object: bytes) -> None:
    registration = next_registration(spec)
    opts = HandlerOpts(cookie=-1, prog_setup_fn=Callback(-errno.EPERM))
    hid = lib.register(b"sotest_custom/", BPF_PROG_TYPE_KPROBE, 0, opts, registration)
    try:
        obj, err = lib.open_mem(bpf_object)
        assert obj == ffi.NULL and err == -errno.EPERM
        assert [c.cookie for c in lib.calls] == [-1]
    finally:
        assert lib.unregister(hid) == 0
