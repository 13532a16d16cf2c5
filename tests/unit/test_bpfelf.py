"""Tests for oracle.bpfelf: the objects parse (pyelftools), open and load (real libbpf),
match what clang emits, and malformed variants do not take the harness down."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cffi
import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oracle.bpfelf import (
    EM_BPF,
    RETURN_0,
    ObjectSpec,
    Program,
    bench_objects,
    build_object,
)
from tests.targets import target_or_skip

FINDINGS = Path("/tmp/bpfelf-findings")

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
PROG_TYPE_UNSPEC, PROG_TYPE_SOCKET_FILTER, PROG_TYPE_KPROBE = 0, 1, 2
PROG_TYPE_XDP, PROG_TYPE_TRACEPOINT, PROG_TYPE_STRUCT_OPS = 6, 5, 27
LIBBPF_ERRNO__FORMAT = 4001


# ---------------------------------------------------------------- ELF reading helpers


@dataclass(frozen=True)
class Sec:
    index: int
    name: bytes  # raw bytes from .shstrtab, not pyelftools' lossy str
    type: str
    flags: int
    align: int
    data: bytes


@dataclass(frozen=True)
class Sym:
    name: bytes
    section: bytes
    bind: str
    type: str
    visibility: str
    value: int
    size: int


def _cstr(table: bytes, offset: int) -> bytes:
    return table[offset : table.index(b"\0", offset)]


def read_elf(obj: bytes) -> tuple[ELFFile, list[Sec], list[Sym]]:
    elf = ELFFile(io.BytesIO(obj))
    shstr = elf.get_section(elf["e_shstrndx"]).data()
    secs = [
        Sec(
            index=i,
            name=_cstr(shstr, s["sh_name"]),
            type=s["sh_type"],
            flags=s["sh_flags"],
            align=s["sh_addralign"],
            data=s.data() if s["sh_type"] != "SHT_NOBITS" else b"",
        )
        for i, s in enumerate(elf.iter_sections())
    ]
    symtab = next(s for s in elf.iter_sections() if isinstance(s, SymbolTableSection))
    strtab = elf.get_section(symtab["sh_link"]).data()
    syms = []
    for s in symtab.iter_symbols():
        shndx = s["st_shndx"]
        syms.append(
            Sym(
                name=_cstr(strtab, s["st_name"]),
                section=secs[shndx].name if isinstance(shndx, int) else b"",
                bind=s["st_info"]["bind"],
                type=s["st_info"]["type"],
                visibility=s["st_other"]["visibility"],
                value=s["st_value"],
                size=s["st_size"],
            )
        )
    return elf, secs, syms


def prog_sections(secs: list[Sec]) -> list[Sec]:
    return [s for s in secs if s.flags & SHF_EXECINSTR and s.data]


def func_syms(syms: list[Sym]) -> list[Sym]:
    return [s for s in syms if s.type == "STT_FUNC"]


def expected_layout(spec: ObjectSpec) -> dict[bytes, list[tuple[bytes, int, bytes]]]:
    """section -> [(symbol name, offset, insns)] in first-appearance order."""
    out: dict[bytes, list[tuple[bytes, int, bytes]]] = {}
    for i, p in enumerate(spec.programs):
        members = out.setdefault(p.section, [])
        off = sum(len(m[2]) for m in members)
        members.append((p.name or b"prog%d" % i, off, p.insns))
    return out


# ---------------------------------------------------------------- libbpf via cffi (ABI mode)

_CDEF = """
struct bpf_object;
struct bpf_program;
struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz, const void *opts);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
const char *bpf_program__name(const struct bpf_program *prog);
int bpf_program__type(const struct bpf_program *prog);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
long libbpf_get_error(const void *ptr);
const char *libbpf_version_string(void);
void *libbpf_set_print(void *fn);
"""

ffi = cffi.FFI()
ffi.cdef(_CDEF)


@dataclass(frozen=True)
class ProgInfo:
    name: bytes
    section: bytes
    type: int
    autoload: bool


class Libbpf:
    """The handful of libbpf calls these tests need, on one shared object."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lib: Any = ffi.dlopen(str(path))
        self.version = ffi.string(self.lib.libbpf_version_string()).decode()

    def _open(self, obj: bytes) -> Any:
        ffi.errno = 0
        handle = self.lib.bpf_object__open_mem(obj, len(obj), ffi.NULL)
        if handle == ffi.NULL:
            return None
        return handle

    def _programs(self, handle: Any) -> list[ProgInfo]:
        out: list[ProgInfo] = []
        prog = ffi.NULL
        while True:
            prog = self.lib.bpf_object__next_program(handle, prog)
            if prog == ffi.NULL:
                return out
            out.append(
                ProgInfo(
                    name=ffi.string(self.lib.bpf_program__name(prog)),
                    section=ffi.string(self.lib.bpf_program__section_name(prog)),
                    type=self.lib.bpf_program__type(prog),
                    autoload=bool(self.lib.bpf_program__autoload(prog)),
                )
            )

    def open(self, obj: bytes) -> list[ProgInfo] | int:
        """The programs libbpf sees, or the positive errno of a failed open."""
        handle = self._open(obj)
        if handle is None:
            return ffi.errno or -1
        try:
            return self._programs(handle)
        finally:
            self.lib.bpf_object__close(handle)

    def open_and_load(self, obj: bytes) -> int:
        handle = self._open(obj)
        assert handle is not None, f"open failed: errno {ffi.errno}"
        try:
            return int(self.lib.bpf_object__load(handle))
        finally:
            self.lib.bpf_object__close(handle)


_LIBS: dict[str, Libbpf] = {}


def _libbpf(spec: str) -> Libbpf:
    """The ``--libbpf`` target ``spec`` loaded here (a release is built into the cache)."""
    if spec not in _LIBS:
        _LIBS[spec] = Libbpf(target_or_skip(spec).path)
    return _LIBS[spec]


LIB_SPECS = [
    pytest.param("system", id="libbpf-system"),
    pytest.param("1.7.0", id="libbpf-1.7.0"),
]


@pytest.fixture(params=LIB_SPECS)
def libbpf(request: pytest.FixtureRequest) -> Libbpf:
    lib = _libbpf(request.param)
    # Two copies of libbpf.so.1 (same SONAME) loaded by path must stay distinct.
    expected = "v1.7" if request.param == "1.7.0" else None
    if expected is not None:
        assert lib.version == expected
    return lib


def strip_q(section: bytes) -> bytes:
    return section[1:] if section.startswith(b"?") else section


# ---------------------------------------------------------------- pure structure tests


def test_header_and_layout() -> None:
    spec = ObjectSpec(
        (
            Program(b"socket"),
            Program(b"kprobe/do_sys_open", name=b"kp"),
            Program(b"socket", name=b"second", insns=RETURN_0 * 2),
        )
    )
    obj = build_object(spec)
    elf, secs, syms = read_elf(obj)
    assert obj[:4] == b"\x7fELF"
    assert elf.elfclass == 64 and elf.little_endian
    assert elf["e_type"] == "ET_REL"
    assert elf.header["e_machine"] in ("EM_BPF", EM_BPF)
    assert elf["e_phnum"] == 0 and elf["e_shoff"] % 8 == 0

    names = [s.name for s in secs]
    assert names == [b"", b"socket", b"kprobe/do_sys_open", b"license",
                     b".strtab", b".symtab", b".shstrtab"]  # fmt: skip
    for s in prog_sections(secs):
        assert s.type == "SHT_PROGBITS"
        assert s.flags == SHF_ALLOC | SHF_EXECINSTR
        assert s.align == 8
    assert secs[1].data == RETURN_0 + RETURN_0 * 2
    assert secs[2].data == RETURN_0
    lic = secs[3]
    assert (lic.type, lic.flags, lic.data) == ("SHT_PROGBITS", SHF_ALLOC | SHF_WRITE, b"GPL\0")

    funcs = func_syms(syms)
    assert [(f.name, f.section, f.value, f.size) for f in funcs] == [
        (b"prog0", b"socket", 0, 16),
        (b"second", b"socket", 16, 32),
        (b"kp", b"kprobe/do_sys_open", 0, 16),
    ]
    for f in funcs:
        assert (f.bind, f.visibility) == ("STB_GLOBAL", "STV_DEFAULT")
    assert syms[0] == Sym(b"", b"", "STB_LOCAL", "STT_NOTYPE", "STV_DEFAULT", 0, 0)
    symtab = elf.get_section(5)
    assert symtab["sh_entsize"] == 24 and symtab["sh_info"] == 1 and symtab["sh_link"] == 4


def test_no_license_and_no_programs() -> None:
    _, secs, syms = read_elf(build_object(ObjectSpec((), license=None)))
    assert [s.name for s in secs] == [b"", b".strtab", b".symtab", b".shstrtab"]
    assert len(syms) == 1
    _, secs, _ = read_elf(build_object(ObjectSpec((Program(b"xdp"),), license=b"")))
    assert secs[2].name == b"license" and secs[2].data == b"\0"


ODD_NAMES = [
    b"\xff\xfe\x80 not utf-8",
    b"with space/and+plus?",
    b"?kprobe/x",
    b"",
    b"?",
    b".text",
    b"license",
    b".strtab",
    b".shstrtab",
    b"\x01\x7f\t\n",
    b"x" * 300,
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
def test_arbitrary_section_names_round_trip(name: bytes) -> None:
    spec = ObjectSpec((Program(name), Program(name, name=b"b"), Program(b"socket")))
    _, secs, syms = read_elf(build_object(spec))
    progs = prog_sections(secs)
    assert [s.name for s in progs] == [name, b"socket"]
    assert [(f.name, f.section, f.value) for f in func_syms(syms)] == [
        (b"prog0", name, 0),
        (b"b", name, 16),
        (b"prog2", b"socket", 0),
    ]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (ObjectSpec((Program(b"a\0b"),)), "NUL"),
        (ObjectSpec((Program(b"s", name=b"1abc"),)), "C identifier"),
        (ObjectSpec((Program(b"s", name=b"a-b"),)), "C identifier"),
        (ObjectSpec((Program(b"s", name=b"x"), Program(b"t", name=b"x"))), "duplicate"),
        (ObjectSpec((Program(b"s"), Program(b"t", name=b"prog0"))), "duplicate"),
        (ObjectSpec((Program(b"s", insns=b""),)), "multiple of 8"),
        (ObjectSpec((Program(b"s", insns=b"\0" * 12),)), "multiple of 8"),
        (ObjectSpec((Program(b"s"),), license=b"G\0PL"), "license"),
    ],
)
def test_invalid_specs_rejected(spec: ObjectSpec, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_object(spec)


def test_deterministic() -> None:
    spec = ObjectSpec((Program(b"socket"), Program(b"xdp")))
    assert build_object(spec) == build_object(spec)


def test_bench_objects_runs() -> None:
    # Not a timing assertion: the figure depends on the machine.
    assert bench_objects(200) > 0


# ---------------------------------------------------------------- hypothesis property

_section_bytes = st.binary(max_size=24).map(lambda b: b.replace(b"\0", b"\x01"))
_pool = st.lists(_section_bytes, min_size=1, max_size=4)


@st.composite
def _specs(draw: st.DrawFn) -> ObjectSpec:
    pool = draw(_pool)  # a small pool makes shared sections frequent
    sections = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    n_insns = draw(st.lists(st.integers(1, 3), min_size=len(sections), max_size=len(sections)))
    lic = draw(st.none() | st.binary(max_size=8).map(lambda b: b.replace(b"\0", b"")))
    return ObjectSpec(
        tuple(Program(s, insns=RETURN_0 * k) for s, k in zip(sections, n_insns, strict=True)),
        license=lic,
    )


@settings(max_examples=300, deadline=None)
@given(_specs())
def test_property_pyelftools_sees_requested_sections_and_symbols(spec: ObjectSpec) -> None:
    _, secs, syms = read_elf(build_object(spec))
    layout = expected_layout(spec)
    assert [s.name for s in prog_sections(secs)] == list(layout)
    for s in prog_sections(secs):
        assert s.data == b"".join(m[2] for m in layout[s.name])
    want = [(name, sec, off, len(ins)) for sec, ms in layout.items() for name, off, ins in ms]
    got = [(f.name, f.section, f.value, f.size) for f in func_syms(syms)]
    assert got == want
    lic = [s for s in secs if s.name == b"license" and not s.flags & SHF_EXECINSTR]
    if spec.license is None:
        assert lic == []
    else:
        assert [s.data for s in lic] == [spec.license + b"\0"]


def _libbpf_special(section: bytes) -> bool:
    """Names libbpf's ELF collector interprets by name, before looking at the type."""
    return (
        section in (b"license", b"version", b"maps", b".maps", b".BTF", b".BTF.ext", b".text")
        or section.startswith(b".debug_")
        or section.startswith(b".rel.debug_")
        or section in (b".rel.BTF", b".rel.BTF.ext")
    )


_plain_section = st.binary(min_size=1, max_size=24).map(lambda b: b.replace(b"\0", b"/"))


@pytest.mark.libbpf
@pytest.mark.parametrize("spec", LIB_SPECS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(sections=st.lists(_plain_section.filter(lambda s: not _libbpf_special(s)), min_size=1,
                         max_size=4))  # fmt: skip
def test_property_libbpf_sees_requested_programs(spec: str, sections: list[bytes]) -> None:
    lib = _libbpf(spec)
    spec = ObjectSpec(tuple(Program(s) for s in sections))
    got = lib.open(build_object(spec))
    assert isinstance(got, list), f"open failed with errno {got}"
    want = [
        (name, strip_q(sec), not sec.startswith(b"?"))
        for sec, ms in expected_layout(spec).items()
        for name, _, _ in ms
    ]
    assert [(p.name, p.section, p.autoload) for p in got] == want


# ---------------------------------------------------------------- real libbpf: open


@pytest.mark.libbpf
def test_open_names_sections_types(libbpf: Libbpf) -> None:
    spec = ObjectSpec(
        (
            Program(b"socket", name=b"sock"),
            Program(b"kprobe/x", name=b"kp"),
            Program(b"?xdp", name=b"lazy"),
            Program(b"no_such_handler/at all", name=b"unknown"),
            Program(b"socket", name=b"sock2"),
            Program(b"tracepoint/syscalls/sys_enter_openat", name=b"tp"),
        )
    )
    got = libbpf.open(build_object(spec))
    assert got == [
        ProgInfo(b"sock", b"socket", PROG_TYPE_SOCKET_FILTER, True),
        ProgInfo(b"sock2", b"socket", PROG_TYPE_SOCKET_FILTER, True),
        ProgInfo(b"kp", b"kprobe/x", PROG_TYPE_KPROBE, True),
        ProgInfo(b"lazy", b"xdp", PROG_TYPE_XDP, False),
        ProgInfo(b"unknown", b"no_such_handler/at all", PROG_TYPE_UNSPEC, True),
        ProgInfo(b"tp", b"tracepoint/syscalls/sys_enter_openat", PROG_TYPE_TRACEPOINT, True),
    ]


@pytest.mark.libbpf
def test_open_many_programs_one_section(libbpf: Libbpf) -> None:
    spec = ObjectSpec(tuple(Program(b"socket", insns=RETURN_0 * (1 + i % 3)) for i in range(64)))
    got = libbpf.open(build_object(spec))
    assert isinstance(got, list)
    assert [p.name for p in got] == [b"prog%d" % i for i in range(64)]


@pytest.mark.libbpf
def test_open_non_utf8_section(libbpf: Libbpf) -> None:
    got = libbpf.open(build_object(ObjectSpec((Program(b"?\xff\xfe sec/+"),))))
    assert got == [ProgInfo(b"prog0", b"\xff\xfe sec/+", PROG_TYPE_UNSPEC, False)]


# What bpf_object__open_mem does with one RETURN_0 program in a section of that name
# (license "GPL"): an errno for a failed open, else [(section, type, autoload)].
# Same in 1.1.2 and 1.7.0 unless split into a {version: result} dict.
_Open = int | list[tuple[bytes, int, bool]]
SPECIAL: dict[bytes, _Open | dict[str, _Open]] = {
    b".text": {"v1.1": [(b".text", PROG_TYPE_UNSPEC, True)], "v1.7": []},
    b"?.text": [(b".text", PROG_TYPE_UNSPEC, False)],
    b"license": [],
    b"?license": [(b"license", PROG_TYPE_UNSPEC, False)],
    b"version": LIBBPF_ERRNO__FORMAT,
    b"maps": errno.ENOTSUP,
    b".maps": errno.ENOENT,
    b"?.maps": [(b".maps", PROG_TYPE_UNSPEC, False)],
    b".BTF": [],
    b".BTF.ext": [],
    b".debug_info": [],
    b".rel.debug_info": [],
    b".rel.BTF": [],
    b".rel.BTF.ext": [],
    b".data": [(b".data", PROG_TYPE_UNSPEC, True)],
    b".data.x": [(b".data.x", PROG_TYPE_UNSPEC, True)],
    b".rodata": [(b".rodata", PROG_TYPE_UNSPEC, True)],
    b".bss": [(b".bss", PROG_TYPE_UNSPEC, True)],
    b".kconfig": [(b".kconfig", PROG_TYPE_UNSPEC, True)],
    b".ksyms": [(b".ksyms", PROG_TYPE_UNSPEC, True)],
    b".struct_ops": [(b".struct_ops", PROG_TYPE_UNSPEC, True)],
    b".struct_ops.link": [(b".struct_ops.link", PROG_TYPE_UNSPEC, True)],
    b"struct_ops": [(b"struct_ops", PROG_TYPE_STRUCT_OPS, True)],
    b".addr_space.1": [(b".addr_space.1", PROG_TYPE_UNSPEC, True)],
    b".strtab": [(b".strtab", PROG_TYPE_UNSPEC, True)],
    b".symtab": [(b".symtab", PROG_TYPE_UNSPEC, True)],
    b".llvm_addrsig": [(b".llvm_addrsig", PROG_TYPE_UNSPEC, True)],
    b".rel.text": [(b".rel.text", PROG_TYPE_UNSPEC, True)],
    b"": [(b"", PROG_TYPE_UNSPEC, True)],
    b"?": [(b"", PROG_TYPE_UNSPEC, False)],
}


@pytest.mark.libbpf
@pytest.mark.parametrize("section", list(SPECIAL), ids=repr)
def test_special_names(libbpf: Libbpf, section: bytes) -> None:
    want = SPECIAL[section]
    if isinstance(want, dict):
        if libbpf.version not in want:
            pytest.skip(f"no recorded expectation for libbpf {libbpf.version}")
        want = want[libbpf.version]
    got = libbpf.open(build_object(ObjectSpec((Program(section),))))
    if isinstance(got, list):
        assert [(p.section, p.type, p.autoload) for p in got] == want
    else:
        assert got == want


@pytest.mark.libbpf
def test_text_beside_other_programs_is_a_subprogram(libbpf: Libbpf) -> None:
    # With another program present, even 1.1.2 treats .text functions as subprograms.
    got = libbpf.open(build_object(ObjectSpec((Program(b".text"), Program(b"socket")))))
    assert got == [ProgInfo(b"prog1", b"socket", PROG_TYPE_SOCKET_FILTER, True)]


@pytest.mark.libbpf
def test_program_in_license_section_real_license_wins(libbpf: Libbpf) -> None:
    # The program's bytes are read as a license first, then the real section overrides
    # it; loading a socket filter next to it works.
    obj = build_object(ObjectSpec((Program(b"license"), Program(b"socket"))))
    got = libbpf.open(obj)
    assert got == [ProgInfo(b"prog1", b"socket", PROG_TYPE_SOCKET_FILTER, True)]


# ---------------------------------------------------------------- real libbpf: load


def _load_or_skip(lib: Libbpf, obj: bytes) -> int:
    rc = lib.open_and_load(obj)
    if rc in (-errno.EPERM, -errno.ENOSYS, -errno.EACCES) and os.geteuid() != 0:
        pytest.skip(f"bpf() unavailable: {os.strerror(-rc)} (needs root / CAP_BPF)")
    if rc in (-errno.EPERM, -errno.ENOSYS):
        pytest.skip(f"bpf() unavailable here: {os.strerror(-rc)}")
    return rc


@pytest.mark.libbpf
@pytest.mark.bpf_syscall
def test_load_socket_program(libbpf: Libbpf) -> None:
    assert _load_or_skip(libbpf, build_object(ObjectSpec((Program(b"socket"),)))) == 0


@pytest.mark.libbpf
@pytest.mark.bpf_syscall
def test_load_several_programs_sharing_a_section(libbpf: Libbpf) -> None:
    spec = ObjectSpec(
        (Program(b"socket"), Program(b"socket", name=b"other"), Program(b"?socket/lazy")),
        license=None,
    )
    assert _load_or_skip(libbpf, build_object(spec)) == 0


@pytest.mark.libbpf
@pytest.mark.bpf_syscall
def test_load_unspec_program_fails_cleanly(libbpf: Libbpf) -> None:
    rc = _load_or_skip(libbpf, build_object(ObjectSpec((Program(b"not_a_handler"),))))
    assert rc == -errno.EINVAL


# ---------------------------------------------------------------- comparison with clang

CLANG_PROGRAMS = [
    (b"socket", b"sock_a"),
    (b"kprobe/do_sys_open", b"kp"),
    (b"socket", b"sock_b"),
    (b"?xdp", b"lazy_xdp"),
    (b"tracepoint/syscalls/sys_enter_openat", b"tp"),
]
# Sections only one side has; see "differences from clang" in oracle/bpfelf.py.
CLANG_ONLY = {b".text", b".llvm_addrsig", b".BTF", b".BTF.ext", b".rel.BTF", b".rel.BTF.ext"}
OURS_ONLY = {b".shstrtab"}


@pytest.fixture(scope="module")
def clang_object(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not installed: cannot compare with a compiled object")
    src = "#define SEC(n) __attribute__((section(n), used))\n"
    for sec, name in CLANG_PROGRAMS:
        src += f'SEC("{sec.decode()}") int {name.decode()}(void *ctx) {{ return 0; }}\n'
    src += 'char _license[] SEC("license") = "GPL";\n'
    d = tmp_path_factory.mktemp("clang")
    (d / "p.c").write_text(src)
    proc = subprocess.run(
        [clang, "-target", "bpf", "-O2", "-c", "p.c", "-o", "p.o"],
        cwd=d, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"clang -target bpf failed: {proc.stderr.strip()[:500]}")
    return (d / "p.o").read_bytes()


def _ours() -> bytes:
    return build_object(ObjectSpec(tuple(Program(s, name=n) for s, n in CLANG_PROGRAMS)))


def test_matches_clang_structure(clang_object: bytes) -> None:
    celf, csecs, csyms = read_elf(clang_object)
    oelf, osecs, osyms = read_elf(_ours())
    assert (celf["e_type"], celf["e_machine"]) == (oelf["e_type"], oelf["e_machine"])
    assert celf.little_endian == oelf.little_endian and celf.elfclass == oelf.elfclass

    def progs(secs: list[Sec]) -> list[tuple[bytes, str, int, int, bytes]]:
        return [(s.name, s.type, s.flags, s.align, s.data) for s in prog_sections(secs)]

    assert progs(osecs) == progs(csecs)  # same names, types, flags, alignment, insns

    def funcs(syms: list[Sym]) -> set[Sym]:
        return set(func_syms(syms))

    assert funcs(osyms) == funcs(csyms)

    def lic(secs: list[Sec]) -> list[tuple[str, int, bytes]]:
        return [(s.type, s.flags, s.data) for s in secs if s.name == b"license"]

    assert lic(osecs) == lic(csecs) == [("SHT_PROGBITS", SHF_ALLOC | SHF_WRITE, b"GPL\0")]

    # The documented differences, and only those.
    cnames = {s.name for s in csecs}
    onames = {s.name for s in osecs}
    assert cnames - onames <= CLANG_ONLY
    assert onames - cnames <= OURS_ONLY
    extra_syms = {(s.name, s.type) for s in csyms if s.type != "STT_FUNC"} - {
        (s.name, s.type) for s in osyms
    }
    assert {t for _, t in extra_syms} <= {"STT_FILE", "STT_OBJECT", "STT_SECTION"}


@pytest.mark.libbpf
def test_libbpf_sees_same_programs_as_in_clang_object(libbpf: Libbpf, clang_object: bytes) -> None:
    theirs = libbpf.open(clang_object)
    ours = libbpf.open(_ours())
    assert isinstance(ours, list) and ours == theirs
    assert {p.type for p in ours} == {
        PROG_TYPE_SOCKET_FILTER, PROG_TYPE_KPROBE, PROG_TYPE_XDP, PROG_TYPE_TRACEPOINT,
    }  # fmt: skip


# ---------------------------------------------------------------- malformed input, out of process

# Runs in a child interpreter: opens each case with libbpf, prints one JSON line per
# case *after* it returns. If the child dies, the first case without a line is the one.
_CHILD = textwrap.dedent(
    """
    import json, struct, sys, cffi
    ffi = cffi.FFI()
    ffi.cdef(sys.argv[3])
    lib = ffi.dlopen(sys.argv[1])
    lib.libbpf_set_print(ffi.NULL)
    data = open(sys.argv[2], "rb").read()
    cases, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        cases.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    # Each case ends right before a PROT_NONE page, so an over-read of the input faults.
    libc_ffi = cffi.FFI()
    libc_ffi.cdef("void *mmap(void *, size_t, int, int, int, long);"
                  "int mprotect(void *, size_t, int); int munmap(void *, size_t);")
    libc = libc_ffi.dlopen(None)
    PAGE = 4096
    for i in range(int(sys.argv[4]), len(cases)):
        case = cases[i]
        if case:
            body = -(-len(case) // PAGE) * PAGE
            base = libc.mmap(libc_ffi.NULL, body + PAGE, 3, 0x22, -1, 0)
            assert libc_ffi.cast("long", base) != -1
            assert libc.mprotect(libc_ffi.cast("char *", base) + body, PAGE, 0) == 0
            start = libc_ffi.cast("char *", base) + body - len(case)
            libc_ffi.memmove(start, case, len(case))
            buf = ffi.cast("void *", libc_ffi.cast("long", start))
        else:
            buf = ffi.NULL
        ffi.errno = 0
        obj = lib.bpf_object__open_mem(buf, len(case), ffi.NULL)
        if obj == ffi.NULL:
            res = {"i": i, "errno": ffi.errno}
        else:
            n = 0
            p = lib.bpf_object__next_program(obj, ffi.NULL)
            while p != ffi.NULL:
                n += 1
                ffi.string(lib.bpf_program__section_name(p))
                p = lib.bpf_object__next_program(obj, p)
            lib.bpf_object__close(obj)
            res = {"i": i, "programs": n}
        if case:
            libc.munmap(base, body + PAGE)
        sys.stdout.write(json.dumps(res) + "\\n")
        sys.stdout.flush()
    """
)


def _field_offsets(obj: bytes) -> Iterator[tuple[int, int]]:
    """(offset, width) of every ELF header, section header and symbol field."""
    widths_ehdr = [2, 2, 4, 8, 8, 8, 4, 2, 2, 2, 2, 2, 2]
    off = 16
    for w in widths_ehdr:
        yield off, w
        off += w
    shoff, shnum = struct.unpack_from("<Q", obj, 40)[0], struct.unpack_from("<H", obj, 60)[0]
    for i in range(shnum):
        off = shoff + 64 * i
        for w in [4, 4, 8, 8, 8, 8, 4, 4, 8, 8]:
            yield off, w
            off += w
        if struct.unpack_from("<I", obj, shoff + 64 * i + 4)[0] == 2:  # SHT_SYMTAB
            sym_off, sym_size = struct.unpack_from("<QQ", obj, shoff + 64 * i + 24)
            for j in range(sym_size // 24):
                o = sym_off + 24 * j
                for w_off, w in [(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)]:
                    yield o + w_off, w


def malformed_cases() -> list[tuple[str, bytes]]:
    base = build_object(
        ObjectSpec(
            (
                Program(b"socket"),
                Program(b"kprobe/x", insns=RETURN_0 * 2),
                Program(b"socket", name=b"second"),
                Program(b"?xdp"),
            )
        )
    )
    cases: list[tuple[str, bytes]] = [("base", base)]
    cases += [(f"truncate@{n}", base[:n]) for n in range(len(base))]
    for pos in range(len(base)):
        for val in {0x00, 0xFF, base[pos] ^ 0x80, (base[pos] + 1) & 0xFF}:
            if val != base[pos]:
                cases.append(
                    (f"byte@{pos}={val:#04x}", base[:pos] + bytes([val]) + base[pos + 1 :])
                )
    for off, w in _field_offsets(base):
        cur = int.from_bytes(base[off : off + w], "little")
        mask = (1 << (8 * w)) - 1
        for val in {0, 1, mask, mask >> 1, len(base), len(base) + 1, cur - 1, cur + 8, cur * 2}:
            val &= mask
            if val != cur:
                name = f"field@{off}/{w}={val:#x}"
                cases.append((name, base[:off] + val.to_bytes(w, "little") + base[off + w :]))
    rng = random.Random(20240607)
    for k in range(500):
        b = bytearray(base)
        for _ in range(rng.randint(2, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append((f"random#{k}", bytes(b)))
    return cases


def run_malformed(
    lib_path: Path, cases: list[tuple[str, bytes]], tmp: Path, child: str = _CHILD
) -> dict[str, Any]:
    """Feed ``cases`` to libbpf in child interpreters, restarting after each crash."""
    blob = tmp / "cases.bin"
    blob.write_bytes(b"".join(struct.pack("<I", len(c)) + c for _, c in cases))
    results: dict[int, dict[str, Any]] = {}
    crashes: list[dict[str, Any]] = []
    start = 0
    while start < len(cases):
        proc = subprocess.run(
            [sys.executable, "-c", child, str(lib_path), str(blob), _CDEF, str(start)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        for line in proc.stdout.splitlines():
            r = json.loads(line)
            results[r["i"]] = r
        if proc.returncode == 0:
            break
        crashed = start + sum(1 for i in results if i >= start)
        if crashed >= len(cases):  # died after the last case (e.g. at exit)
            crashes.append({"case": "<exit>", "returncode": proc.returncode})
            break
        name, data = cases[crashed]
        crashes.append(
            {"case": name, "index": crashed, "returncode": proc.returncode,
             "stderr": proc.stderr[-2000:], "data": data}
        )  # fmt: skip
        if len(crashes) >= 50:
            break
        start = crashed + 1
    return {"results": results, "crashes": crashes}


@pytest.mark.libbpf
@pytest.mark.slow
@pytest.mark.parametrize("spec", LIB_SPECS)
def test_malformed_objects_do_not_kill_the_harness(spec: str, tmp_path: Path) -> None:
    path = target_or_skip(spec).path
    cases = malformed_cases()
    out = run_malformed(path, cases, tmp_path)
    results, crashes = out["results"], out["crashes"]
    # The harness survived and accounted for every case: a result line or a crash record.
    crashed = {c["index"] for c in crashes if "index" in c}
    assert set(results) | crashed == set(range(len(cases)))
    assert results[0] == {"i": 0, "programs": 4}  # the unmodified object ("?xdp" counts too)
    assert results[1].get("errno") == errno.EINVAL  # open_mem of 0 bytes
    if crashes:
        FINDINGS.mkdir(parents=True, exist_ok=True)
        for c in crashes:
            if "data" not in c:
                continue
            digest = hashlib.sha256(c["data"]).hexdigest()[:16]
            stem = FINDINGS / f"{spec}-{digest}"
            stem.with_suffix(".o").write_bytes(c["data"])
            meta = {k: v for k, v in c.items() if k != "data"} | {"libbpf": str(path)}
            stem.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        warnings.warn(
            f"libbpf at {path} crashed on {len(crashes)} malformed input(s): "
            + ", ".join(f"{c['case']} (rc {c['returncode']})" for c in crashes)
            + f"; inputs saved under {FINDINGS}",
            stacklevel=1,
        )


_FAKE_CHILD = textwrap.dedent(
    """
    import json, os, struct, sys
    data = open(sys.argv[2], "rb").read()
    cases, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        cases.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    for i in range(int(sys.argv[4]), len(cases)):
        if cases[i] == b"BOOM":
            os.abort()
        print(json.dumps({"i": i, "programs": 0}), flush=True)
    """
)


def test_malformed_harness_attributes_crashes(tmp_path: Path) -> None:
    cases = [("a", b"x"), ("boom1", b"BOOM"), ("b", b"y"), ("boom2", b"BOOM"), ("c", b"z")]
    out = run_malformed(Path("/nonexistent"), cases, tmp_path, child=_FAKE_CHILD)
    assert sorted(out["results"]) == [0, 2, 4]
    assert [(c["case"], c["index"], c["returncode"]) for c in out["crashes"]] == [
        ("boom1", 1, -6),
        ("boom2", 3, -6),
    ]
