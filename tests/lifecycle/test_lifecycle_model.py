"""oracle.model.objects, one test per rule, per release where releases differ.

Every case here is also checked against real libbpf (system 1.1.2 and 1.7.0)
when ``bpf()`` works: ``test_rule_cases_on_real_libbpf``.
"""

from __future__ import annotations

import errno
from typing import Final

import pytest

from oracle import Oracle
from oracle.bpfelf import RETURN_0, ObjectSpec, Program, build_object
from oracle.errors import BadArgumentError, LibbpfError
from oracle.libbpf.lifecycle import bpf_permitted
from oracle.libbpf.targets import resolve
from oracle.libbpf.worker import Worker
from oracle.model.objects import NotModelledError, kernel_load, special_section
from oracle.model.versions import profile
from oracle.ops import (
    NO_BPF,
    NO_OBJECT,
    NO_PROGRAM,
    Answer,
    Attach,
    Callback,
    CallbackCall,
    Close,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    Register,
    SetAutoload,
    SetType,
    Unregister,
)
from tests.divergence_cases import LIFECYCLE_CASES, MODEL_ANSWERS

VERSIONS: Final = ("1.1.2", "1.4.6", "1.5.0", "1.7.0")
SOCKET_FILTER, KPROBE, STRUCT_OPS = 1, 2, 27
OBJ: Final = ObjRef(0)
ALL: Final = HandlerOpts(cookie=7, prog_setup_fn=Callback(0), prog_prepare_load_fn=Callback(0),
                         prog_attach_fn=Callback(0))


def obj(*sections: bytes, license_: bytes | None = b"GPL") -> Open:
    return Open(ObjectSpec(tuple(Program(s) for s in sections), license_))


def info(name: bytes, section: bytes, prog_type: int, eat: int = 0, autoload: int = 1) -> Answer:
    return Answer(0, (name, section, prog_type, eat, autoload))


def run(version: str, ops: list[Op], *, bpf: bool = True) -> list[Answer]:
    return Oracle(version, bpf=bpf).run(ops)


def cb(kind: str, reg: int, prog: bytes, section: bytes, cookie: int = 7,
       ret: int = 0) -> CallbackCall:
    return CallbackCall(kind, reg, prog, section, cookie, ret)


# -- open ---------------------------------------------------------------------------

def test_special_section_names() -> None:
    assert special_section(b"license") == "license"
    assert special_section(b".rel.debug_x") == special_section(b".debug_x") == "skip"
    assert special_section(b".rel.BTF.ext") == "skip"
    assert special_section(b".BTF") == "btf"
    assert special_section(b"?license") is None
    assert special_section(b".rel.text") is None


@pytest.mark.parametrize("version", VERSIONS)
def test_open_order_question_mark_and_special_names(version: str) -> None:
    answers = run(version, [obj(b"socket", b"?socket", b"license", b".debug_x", b"?.maps",
                                b"socket"),
                            *(ProgInfo(OBJ, i) for i in range(4))])
    assert answers[0] == Answer(0, (4,))
    # programs sharing a section are listed together, sections in first-appearance order
    assert answers[1:] == [info(b"prog0", b"socket", SOCKET_FILTER),
                           info(b"prog5", b"socket", SOCKET_FILTER),
                           info(b"prog1", b"socket", SOCKET_FILTER, autoload=0),
                           info(b"prog4", b".maps", 0, autoload=0)]


@pytest.mark.parametrize(("section", "rc"), [(b"version", -4001), (b"maps", -errno.ENOTSUP),
                                             (b".maps", -errno.ENOENT)])
def test_open_fails_on_special_names(section: bytes, rc: int) -> None:
    ops: list[Op] = [Register(None, 1, 0, ALL), obj(b"x", section)]
    assert run("1.7.0", ops)[1] == Answer(rc, (None,))  # fails before any prog_setup_fn


def test_open_failure_order_follows_sections() -> None:
    assert run("1.7.0", [obj(b".maps", b"maps", b"version")])[0].rc == -errno.ENOTSUP


def test_maps_with_a_code_btf_section_is_btf_news_error() -> None:
    assert run("1.7.0", [obj(b".BTF", b".maps")])[0] == Answer(-errno.EINVAL, (None,))


@pytest.mark.parametrize("version", VERSIONS)
def test_text_alone_is_a_program_before_1_5(version: str) -> None:
    alone = run(version, [obj(b".text"), ProgInfo(OBJ, 0), Load(OBJ)])
    with_other = run(version, [obj(b".text", b"socket")])
    if profile(version).text_program_when_alone:
        assert alone == [Answer(0, (1,)), info(b"prog0", b".text", 0), Answer(-errno.EINVAL)]
    else:
        assert alone == [Answer(0, (0,)), Answer(NO_PROGRAM, (None,) * 5), Answer(0)]
    assert with_other == [Answer(0, (1,))]


@pytest.mark.parametrize("version", VERSIONS)
def test_setup_fn_cookie_and_negative_return_fails_open(version: str) -> None:
    bad = HandlerOpts(cookie=3, prog_setup_fn=Callback(-7))
    odd = HandlerOpts(cookie=4, prog_setup_fn=Callback(5))
    answers = run(version, [Register(b"a", 1, 0, odd), Register(b"b/", 1, 0, bad),
                            obj(b"a", b"b/x", b"a"), ProgInfo(OBJ, 0)])
    assert answers[2] == Answer(-7, (None,), (cb("prog_setup_fn", 0, b"prog0", b"a", 4, 5),
                                              cb("prog_setup_fn", 0, b"prog2", b"a", 4, 5),
                                              cb("prog_setup_fn", 1, b"prog1", b"b/x", 3, -7)))
    assert answers[3] == Answer(NO_OBJECT, (None,) * 5)


def test_raw_bytes_open() -> None:
    spec = ObjectSpec((Program(b"socket"),))
    assert run("1.7.0", [Open(build_object(spec)), Open(b"")]) == [Answer(0, (1,)),
                                                                    Answer(-errno.EINVAL, (None,))]
    with pytest.raises(NotModelledError):  # a whole ELF64 header, but not bpfelf's output
        run("1.7.0", [Open(build_object(spec)[:-1] + b"\1")])


def test_bytes_that_are_no_whole_elf_object_fail_open() -> None:
    obj = build_object(ObjectSpec((Program(b"socket"),)))
    cases = [(b"not an ELF", -4001), (b"\x7fELF garbage", -4001), (obj[:15], -4001),
             (obj[:16], -4000), (obj[:63], -4000), (obj[:64], -4001), (obj[:-1], -4001)]
    for data, rc in cases:
        assert run("1.7.0", [Open(data)]) == [Answer(rc, (None,))], data[:20]


# -- set_type / set_autoload ---------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_set_type_keeps_or_drops_the_handler(version: str) -> None:
    answers = run(version, [Register(b"a", KPROBE, 0, ALL), obj(b"a", b"a"),
                            SetType(OBJ, 0, SOCKET_FILTER), SetType(OBJ, 1, KPROBE), Load(OBJ),
                            Attach(OBJ, 0)])
    assert answers[2:4] == [Answer(0), Answer(0)]
    load, attach = answers[4:]
    second = cb("prog_prepare_load_fn", 0, b"prog1", b"a")
    if profile(version).set_type_resets_handler != "never":
        assert load == Answer(0, (), (second,))  # prog0 lost its handler, prog1 did not
        assert attach == Answer(-errno.EOPNOTSUPP)
    else:
        assert load == Answer(0, (), (cb("prog_prepare_load_fn", 0, b"prog0", b"a"), second))
        assert attach == Answer(-errno.EOPNOTSUPP, (), (cb("prog_attach_fn", 0, b"prog0",
                                                           b"a"),))


@pytest.mark.parametrize("version", VERSIONS)
def test_set_type_keeps_the_fallback(version: str) -> None:
    answers = run(version, [Register(None, KPROBE, 0, ALL), obj(b"q"),
                            SetType(OBJ, 0, SOCKET_FILTER), Load(OBJ)])
    assert answers[3].calls == (cb("prog_prepare_load_fn", 0, b"prog0", b"q"),)


@pytest.mark.parametrize("version", VERSIONS)
def test_after_load_attempt_setters_refuse(version: str) -> None:
    answers = run(version, [obj(b"unknown"), Load(OBJ), SetType(OBJ, 0, 1),
                            SetAutoload(OBJ, 0, True), Load(OBJ), ProgInfo(OBJ, 0)])
    assert [a.rc for a in answers[1:5]] == [-errno.EINVAL, -errno.EBUSY, -errno.EINVAL,
                                            -errno.EINVAL]
    assert answers[5] == info(b"prog0", b"unknown", 0)


# -- load ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_load_skips_autoload_off_and_stops_at_first_failure(version: str) -> None:
    refuse = HandlerOpts(cookie=7, prog_prepare_load_fn=Callback(-5))
    positive = HandlerOpts(cookie=7, prog_prepare_load_fn=Callback(3))
    answers = run(version, [Register(b"p", 1, 0, positive), Register(b"r", 1, 0, refuse),
                            obj(b"?r", b"p", b"r", b"p"), Load(OBJ)])
    assert answers[3] == Answer(-5, (), (
        cb("prog_prepare_load_fn", 0, b"prog1", b"p", ret=3),  # positive: ignored
        cb("prog_prepare_load_fn", 0, b"prog3", b"p", ret=3),
        cb("prog_prepare_load_fn", 1, b"prog2", b"r", ret=-5)))


@pytest.mark.parametrize("version", VERSIONS)
def test_unspec_fails_before_the_callback(version: str) -> None:
    answers = run(version, [Register(b"u", 0, 0, ALL), obj(b"u"), Load(OBJ)])
    assert answers[2] == Answer(-errno.EINVAL)


@pytest.mark.parametrize("version", VERSIONS)
def test_struct_ops_rejected_early_from_1_4(version: str) -> None:
    answers = run(version, [Register(b"s", STRUCT_OPS, 0, ALL), obj(b"s"), Load(OBJ)])
    no_license = run(version, [Register(b"s", STRUCT_OPS, 0), obj(b"s", license_=None), Load(OBJ)])
    if profile(version).struct_ops_rejected_early:
        assert answers[2] == Answer(-errno.EINVAL)
    else:  # the kernel: -ENOTSUPP with a GPL license, -EINVAL without
        assert answers[2] == Answer(-524, (), (cb("prog_prepare_load_fn", 0, b"prog0", b"s"),))
    assert no_license[2] == Answer(-errno.EINVAL)


# -- 0.8.x: legacy maps, vmlinux BTF with ENUM64 (versions.BEHAVIOURS) -------------------


def maps_obj(*insns: bytes, other: bytes = b"socket") -> Open:
    return Open(ObjectSpec((Program(other), *(Program(b"maps", insns=i) for i in insns)),
                           b"GPL"))


def test_legacy_maps_section_opens_before_1_0() -> None:
    assert run("0.8.3", [obj(b"maps", b"maps")])[0] == Answer(0, (0,))
    assert run("1.0.3", [obj(b"maps", b"maps")])[0] == Answer(-errno.ENOTSUP, (None,))
    # read after the scan: .maps' missing BTF comes first, setup calls after
    assert run("0.8.3", [obj(b"maps", b".maps")])[0] == Answer(-errno.ENOENT, (None,))
    setup = HandlerOpts(prog_setup_fn=Callback(-1))
    assert run("0.8.3", [Register(None, 1, 0, setup), obj(b"x", b"maps")])[1] == Answer(
        -errno.EPERM, (None,), (cb("prog_setup_fn", 0, b"prog0", b"x", 0, -1),))


def test_legacy_map_definitions_must_split_evenly_and_be_zero_past_bpf_map_def() -> None:
    zero24 = bytes(24)
    assert run("0.8.3", [maps_obj(zero24, zero24)])[0] == Answer(0, (1,))
    assert run("0.8.3", [maps_obj(RETURN_0 * 2, RETURN_0 * 2)])[0] == Answer(-errno.EINVAL,
                                                                            (None,))
    # 40 bytes for two symbols: 20 each, but the second starts at 24 and runs past the end
    assert run("0.8.3", [maps_obj(bytes(24), bytes(16))])[0] == Answer(-errno.EINVAL, (None,))
    assert run("0.8.3", [maps_obj(bytes(16), bytes(24))])[0] == Answer(0, (1,))
    # 3 symbols in 40 bytes do not split evenly
    assert run("0.8.3", [maps_obj(bytes(8), bytes(16), bytes(16))])[0] == Answer(-errno.EINVAL,
                                                                                (None,))


def test_loading_legacy_maps_creates_the_first_one() -> None:
    # RETURN_0 as a bpf_map_def: type 0xb7, no kernel's; type 0: BPF_MAP_TYPE_UNSPEC
    assert run("0.8.3", [maps_obj(RETURN_0), Load(OBJ)])[1] == Answer(-errno.EINVAL)
    assert run("0.8.3", [maps_obj(bytes(16)), Load(OBJ)])[1] == Answer(-errno.EINVAL)
    with pytest.raises(NotModelledError):  # BPF_MAP_TYPE_HASH: the kernel creates it
        run("0.8.3", [maps_obj(b"\x01" + bytes(15)), Load(OBJ)])


@pytest.mark.parametrize("prog_type", [STRUCT_OPS, 26, 29])  # struct_ops, tracing, lsm
def test_vmlinux_btf_with_enum64_fails_0_8_loads(prog_type: int) -> None:
    ops: list[Op] = [Register(b"s", SOCKET_FILTER, 0, ALL), obj(b"s", b"s"),
                     SetType(OBJ, 1, prog_type), Load(OBJ)]
    assert run("0.8.3", ops)[3] == Answer(-errno.ESRCH)  # before any callback
    off = run("0.8.3", [*ops[:3], SetAutoload(OBJ, 1, False), Load(OBJ)])
    assert off[4] == Answer(0, (), (cb("prog_prepare_load_fn", 0, b"prog0", b"s"),))
    assert profile("1.0.3").reads_enum64_btf and not profile("0.8.3").reads_enum64_btf


@pytest.mark.parametrize("ret", [1, -4096])
def test_0_8_attach_returns_past_the_errno_range_are_pointers(ret: int) -> None:
    opts = HandlerOpts(prog_attach_fn=Callback(ret))
    ops: list[Op] = [Register(b"a", SOCKET_FILTER, 0, opts), obj(b"a"), Attach(OBJ, 0)]
    assert run("1.0.3", ops)[2] == Answer(ret, (), (cb("prog_attach_fn", 0, b"prog0", b"a", 0,
                                                       ret),))
    with pytest.raises(NotModelledError):  # ERR_PTR(ret): a "link" libbpf_get_error calls 0
        run("0.8.3", ops)
    ops[0] = Register(b"a", SOCKET_FILTER, 0, HandlerOpts(prog_attach_fn=Callback(-4095)))
    assert run("0.8.3", ops)[2].rc == -4095


def test_kernel_model() -> None:
    assert kernel_load(SOCKET_FILTER) == 0
    assert kernel_load(31) == -errno.EINVAL
    assert kernel_load(2**32 - 1) == -errno.EINVAL
    with pytest.raises(NotModelledError):
        kernel_load(9)


# -- attach --------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_attach_order_of_checks(version: str) -> None:
    fails = HandlerOpts(cookie=7, prog_attach_fn=Callback(-3))
    positive = HandlerOpts(cookie=8, prog_attach_fn=Callback(2))
    answers = run(version, [Register(b"f", 1, 0, fails), Register(b"g", 1, 0, positive),
                            obj(b"f", b"socket", b"g"), Attach(OBJ, 0), Attach(OBJ, 1), Load(OBJ),
                            Attach(OBJ, 0), Attach(OBJ, 2)])
    failing = Answer(-3, (), (cb("prog_attach_fn", 0, b"prog0", b"f", ret=-3),))
    if profile(version).attach_requires_fd:
        assert answers[3] == Answer(-errno.EINVAL)  # not loaded: callback not called
    else:
        assert answers[3] == failing
    assert answers[4] == Answer(-errno.EOPNOTSUPP)  # built-in "socket" has no attach fn
    assert answers[6] == failing
    assert answers[7] == Answer(2, (), (cb("prog_attach_fn", 1, b"prog2", b"g", 8, 2),))


# -- harness conventions --------------------------------------------------------------

def test_conventions() -> None:
    answers = run("1.7.0", [obj(b"version"), ProgInfo(OBJ, 0), obj(b"socket"),
                            ProgInfo(ObjRef(1), 1), Close(ObjRef(1)), Close(ObjRef(1)),
                            Load(ObjRef(1))])
    assert answers[1] == Answer(NO_OBJECT, (None,) * 5)
    assert answers[3] == Answer(NO_PROGRAM, (None,) * 5)
    assert answers[4:] == [Answer(0), Answer(NO_OBJECT), Answer(NO_OBJECT)]
    with pytest.raises(BadArgumentError):
        run("1.7.0", [Load(ObjRef(0))])
    assert run("1.7.0", [obj(b"socket"), Load(OBJ), Attach(OBJ, 0)], bpf=False) == [
        Answer(0, (1,)), Answer(NO_BPF), Answer(NO_BPF)]


@pytest.mark.parametrize("version", VERSIONS)
def test_binding_survives_registry_changes(version: str) -> None:
    """The spec's reading (module rules): the open-time handler stays, whatever happens."""
    ops: list[Op] = [Register(b"a", 1, 0, ALL), Register(b"b", 1, 0, ALL), obj(b"b"),
                     Unregister(HandleRef(0)), Register(b"b", 1, 0), Load(OBJ)]
    assert run(version, ops)[-1].calls == (cb("prog_prepare_load_fn", 1, b"prog0", b"b"),)


# -- the same rules on real libbpf --------------------------------------------------------

RULE_CASES: Final[list[list[Op]]] = [
    [obj(b"socket", b"?socket", b"license", b".debug_x", b"?.maps", b"socket"),
     *(ProgInfo(OBJ, i) for i in range(4))],
    [Register(None, 1, 0, ALL), obj(b"x", b"version"), obj(b"maps"), obj(b".maps"),
     obj(b".maps", b"maps", b"version")],
    [obj(b".text"), ProgInfo(OBJ, 0), Load(OBJ), obj(b".text", b"socket")],
    [Register(b"a", 1, 0, HandlerOpts(cookie=4, prog_setup_fn=Callback(5))),
     Register(b"b/", 1, 0, HandlerOpts(cookie=3, prog_setup_fn=Callback(-7))),
     obj(b"a", b"b/x", b"a"), ProgInfo(OBJ, 0)],
    [Open(build_object(ObjectSpec((Program(b"socket"),)))), Open(b"")],
    [Register(b"a", KPROBE, 0, ALL), obj(b"a", b"a"), SetType(OBJ, 0, SOCKET_FILTER),
     SetType(OBJ, 1, KPROBE), Load(OBJ), Attach(OBJ, 0)],
    [Register(None, KPROBE, 0, ALL), obj(b"q"), SetType(OBJ, 0, SOCKET_FILTER), Load(OBJ)],
    [obj(b"unknown"), Load(OBJ), SetType(OBJ, 0, 1), SetAutoload(OBJ, 0, True), Load(OBJ),
     ProgInfo(OBJ, 0)],
    [Register(b"p", 1, 0, HandlerOpts(cookie=7, prog_prepare_load_fn=Callback(3))),
     Register(b"r", 1, 0, HandlerOpts(cookie=7, prog_prepare_load_fn=Callback(-5))),
     obj(b"?r", b"p", b"r", b"p"), Load(OBJ)],
    [Register(b"u", 0, 0, ALL), obj(b"u"), Load(OBJ)],
    [Register(b"s", STRUCT_OPS, 0, ALL), obj(b"s"), Load(OBJ)],
    [Register(b"s", STRUCT_OPS, 0), obj(b"s", license_=None), Load(OBJ), obj(b"s", b"license"),
     Load(ObjRef(1)), obj(b".BTF", b".maps"), obj(b".BTF.ext", b".maps")],
    [Register(b"f", 1, 0, HandlerOpts(cookie=7, prog_attach_fn=Callback(-3))),
     Register(b"g", 1, 0, HandlerOpts(cookie=8, prog_attach_fn=Callback(2))),
     obj(b"f", b"socket", b"g"), Attach(OBJ, 0), Attach(OBJ, 1), Load(OBJ), Attach(OBJ, 0),
     Attach(OBJ, 2)],
    [obj(b"version"), ProgInfo(OBJ, 0), obj(b"socket"), ProgInfo(ObjRef(1), 1), Close(ObjRef(1)),
     Close(ObjRef(1)), Load(ObjRef(1))],
    [Register(b"k", KPROBE, 0, ALL), Register(b"t", 5, 0, ALL), Register(b"y", 31, 0, ALL),
     Register(b"w", 1000, 0, ALL), obj(b"k", b"t"), Load(OBJ), obj(b"y"), Load(ObjRef(1)),
     obj(b"w"), Load(ObjRef(2))],
]


@pytest.mark.libbpf
@pytest.mark.parametrize("spec", ["system", "1.7.0"])
def test_rule_cases_on_real_libbpf(spec: str) -> None:
    try:
        target = resolve(spec)
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unavailable: {exc}")
    bpf = bpf_permitted()
    with Worker(target) as worker:
        for ops in RULE_CASES:
            worker.reset()
            result = worker.run(ops)
            assert result.crash is None, result.crash
            version = {"v1.1": "1.1.2", "v1.7": "1.7.0"}[str(worker.version)]
            expected = Oracle(version, bpf=bpf).run(ops)
            assert [r.answer for r in result.results] == expected, ops


@pytest.mark.libbpf
@pytest.mark.parametrize("spec", ["system", "1.7.0", "1.7.0+asan"])
@pytest.mark.parametrize("case_id", ["D13", "D14"])
def test_fallback_divergences_on_real_libbpf(spec: str, case_id: str) -> None:
    """libbpf gives the answers divergence_cases records (the oracle: MODEL_ANSWERS)."""
    if not bpf_permitted():
        pytest.skip("bpf() is not permitted here: the cases need Load")
    try:
        target = resolve(spec)
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unavailable: {exc}")
    _, ops, answers = next(c for c in LIFECYCLE_CASES if c[0] == case_id)
    with Worker(target) as worker:
        result = worker.run(ops)
    assert result.crash is None, result.crash
    assert [r.answer for r in result.results] == answers
    assert MODEL_ANSWERS[case_id] != answers
