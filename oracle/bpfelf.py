"""A writer for minimal relocatable BPF ELF objects, in pure Python.

Fuzz campaigns need one fresh BPF object per case: any number of programs,
each in a section whose name the caller picks byte for byte. This module builds
such objects directly, without a compiler at run time, so that
``bpf_object__open_mem`` can be run on them and the SEC() handler that libbpf
picks for each program can be observed.

Rules
-----

An object is described by an :class:`ObjectSpec`: a tuple of :class:`Program`
values and an optional license. :func:`build_object` turns it into bytes.

* ``Program.section`` is the ELF section the program's instructions go into.
  It is written exactly as given: any bytes except NUL (which would end the
  name early), including the empty name, non-UTF-8 bytes, spaces, ``/``,
  ``+``, a leading ``?``, and names libbpf gives a meaning of its own
  (``.text``, ``license``, ``.maps``...; see "Special section names" below).
  The writer does not interpret section names at all.
* Programs whose ``section`` values are equal share one ELF section. Their
  instructions are laid back to back in ``spec.programs`` order, each with its
  own FUNC symbol at its own offset -- the layout clang emits for several
  functions with the same SEC(). Sections appear in the order of the first
  program that names them.
* ``Program.name`` is the FUNC symbol, and so the name libbpf gives the
  program. It must be a C identifier (``[A-Za-z_][A-Za-z0-9_]*``); the empty
  default means ``b"prog%d" % index`` (index into ``spec.programs``). Names
  must be unique in an object, as a linker requires of global definitions.
* ``Program.insns`` is raw BPF bytecode, little-endian, 8 bytes per
  instruction, non-empty. The default, :data:`RETURN_0`, is ``r0 = 0; exit``,
  which the kernel verifier accepts for any program type that allows a zero
  return (e.g. socket filters). The writer never inspects the instructions.
* ``ObjectSpec.license`` is written, NUL-terminated, into a ``license``
  section (no NUL allowed inside); ``None`` omits the section altogether.

Anything outside these rules raises :class:`ValueError`; a spec that passes
always yields an object that libelf parses and libbpf (1.1 to 1.7) accepts,
unless a section name itself triggers a libbpf rule (see below).

Invariants of the output
------------------------

* ELF header: ELFCLASS64, ELFDATA2LSB (little-endian, whatever the host),
  EV_CURRENT, ELFOSABI_NONE, ``e_type = ET_REL``, ``e_machine = EM_BPF``
  (247), ``e_flags = 0``, no program headers, ``e_entry = 0``.
* Section table, in this order::

      [0]        SHT_NULL
      [1..k]     one SHT_PROGBITS per distinct Program.section,
                 flags SHF_ALLOC|SHF_EXECINSTR, sh_addralign 8
      [k+1]      "license", SHT_PROGBITS, SHF_ALLOC|SHF_WRITE, sh_addralign 1
                 (only when ObjectSpec.license is not None)
      [..]       ".strtab"   SHT_STRTAB: symbol names
      [..]       ".symtab"   SHT_SYMTAB, sh_entsize 24, sh_addralign 8,
                             sh_link = index of .strtab, sh_info = 1
      [last]     ".shstrtab" SHT_STRTAB: section names; e_shstrndx points here

* Symbols: the mandatory null symbol, then one symbol per program, grouped
  like the sections (section order, then ``spec.programs`` order inside a
  section, i.e. by ascending offset): STB_GLOBAL, STT_FUNC, STV_DEFAULT,
  ``st_shndx`` = its section, ``st_value`` = byte offset inside the section,
  ``st_size = len(insns)``. There are no local symbols, so ``sh_info = 1``.
* Layout: header (64 bytes), program sections (offsets are multiples of 8
  since every program is), license, .strtab, padding to 8, .symtab,
  .shstrtab, padding to 8, section header table. No relocation sections.
* At most ``SHN_LORESERVE - 4`` (65276) program sections: extended section
  numbering (SHT_SYMTAB_SHNDX, e_shnum = 0) is not implemented.

What libbpf needs to open an object (bpf_object__elf_init / _elf_collect)
---------------------------------------------------------------------------

* 64-bit ELF, a known byte order, ``ET_REL``, ``e_machine`` EM_BPF or 0
  (old LLVM wrote EM_NONE), and a readable section-name string table.
* Exactly one SHT_SYMTAB -- an object without one fails with ``-ENOENT``
  ("stripped object file?") even when it holds no programs -- whose
  ``sh_link`` is non-zero and not past the last section index.
* Programs come from symbols, not from sections: for every SHT_PROGBITS
  section with SHF_EXECINSTR and a non-zero size, each STT_FUNC symbol in it
  becomes a program of ``st_size`` bytes at ``st_value``. Code without a FUNC
  symbol is ignored; a STB_LOCAL FUNC outside ``.text`` is refused
  (``-ENOTSUP``, "static programs not supported"); a size of 0 or not a
  multiple of 8 is refused (``-EINVAL``).
* Section *names* are checked before section *types*: a section named
  ``license``, ``version``, ``maps``, ``.maps``, ``.BTF`` or ``.BTF.ext`` is
  taken for that meaning even when it is executable, and sections named
  ``.debug_*``, ``.rel.debug_*``, ``.rel.BTF``, ``.rel.BTF.ext`` are skipped
  before their type is looked at.
* BTF is optional. Without ``.BTF`` libbpf opens and loads plain programs;
  only BTF-defined maps (``.maps``), struct_ops, BTF-typed externs and the
  like make it mandatory ("BTF is required, but is missing or corrupted").

Special section names (observed with libbpf 1.1.2 and 1.7.0, one program,
RETURN_0, license "GPL"; see tests/unit/test_bpfelf.py::test_special_names)
----------------------------------------------------------------------------

libbpf checks a handful of names before it looks at a section's type, so a
program put there is not a program. Open results for a section holding one
program (same in both versions unless marked):

=========================  ===================================================
section name               bpf_object__open_mem
=========================  ===================================================
``license``                ok, no program: the instructions are read as the
                           license string (a real ``license`` section written
                           after it overrides them)
``version``                fails, -LIBBPF_ERRNO__FORMAT (-4001): the section
                           must be exactly 4 bytes, a program is >= 8
``maps``                   fails, -ENOTSUP (legacy map definitions)
``.maps``                  fails, -ENOENT ("BTF is required, but is missing")
``.BTF``, ``.BTF.ext``     ok, no program: not valid BTF, which is non-fatal
``.debug_*``,              ok, no program: the section is skipped unread
``.rel.debug_*``,
``.rel.BTF``,
``.rel.BTF.ext``
``.text``                  1.1.2 (and up to 1.4.x): ok, the function is listed
                           as a program of type UNSPEC when it is the only
                           program in the object, and load then fails with
                           -EINVAL; with any other program present it is a
                           subprogram and not listed.
                           1.7.0 (since 1.5.0): always a subprogram; open
                           succeeds with nothing listed.
``?`` + any of the above   an ordinary program: the names are compared before
                           the ``?`` is stripped, so ``?license``, ``?.maps``,
                           ``?.text`` give programs in sections ``license``,
                           ``.maps``, ``.text`` with autoload off
``.data``, ``.rodata``,    ordinary programs of type UNSPEC (no SEC() handler
``.bss`` (and ``.x``       matches): executable PROGBITS wins over the data
suffixes), ``.kconfig``,   section meaning, which needs a non-executable
``.ksyms``,                section. Loading them fails with -EINVAL.
``.struct_ops[.link]``,
``.addr_space.1``,
``.jumptables``,
``.strtab``, ``.symtab``,
``.shstrtab``,
``.llvm_addrsig``,
``.rel.text``, ``""``
``?``                      program with section name ``""``, autoload off
``struct_ops``             program of type STRUCT_OPS (27), from its handler
=========================  ===================================================

What is deliberately not emitted, and differences from clang
-------------------------------------------------------------

Compared with ``clang -target bpf -O2 -c`` (clang 14) on C functions
``int f(void *ctx) { return 0; }`` in the same SEC() names, the program
sections (name, type, flags, alignment), the FUNC symbols (binding, type,
visibility, value, size), the instructions themselves and the ``license``
contents are identical, and libbpf reports the same programs with the same
types. What differs:

* No ``.BTF`` / ``.BTF.ext``: producing type information is not cheap, and
  libbpf does not need it to open or load plain programs (see above). Without
  ``.BTF.ext`` there is no func/line info, so verifier logs carry no source.
* No ``.llvm_addrsig`` (SHT_LLVM_ADDRSIG; libbpf ignores it) and no empty
  ``.text`` (libbpf ignores an empty ``.text``).
* No STT_FILE symbol, no STT_SECTION symbols, and no OBJECT symbol for the
  license array (clang writes ``_license``/``LICENSE``, STB_GLOBAL,
  STT_OBJECT): libbpf does not look at them for plain programs.
* Section names and symbol names live in two string tables (.shstrtab and
  .strtab); LLVM shares a single ``.strtab`` for both and puts it first.
* Section order: LLVM puts ``.strtab`` first and ``.symtab`` last.
* No relocations (no maps, no global data, no calls), hence no
  ``.rel<section>`` sections.
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EM_BPF",
    "RETURN_0",
    "ObjectSpec",
    "Program",
    "bench_objects",
    "build_object",
]

# ---------------------------------------------------------------- ELF constants

EM_BPF: Final = 247
ET_REL: Final = 1
EV_CURRENT: Final = 1
ELFCLASS64: Final = 2
ELFDATA2LSB: Final = 1

SHT_PROGBITS: Final = 1
SHT_SYMTAB: Final = 2
SHT_STRTAB: Final = 3

SHF_WRITE: Final = 0x1
SHF_ALLOC: Final = 0x2
SHF_EXECINSTR: Final = 0x4

STB_GLOBAL: Final = 1
STT_FUNC: Final = 2
STV_DEFAULT: Final = 0

SHN_LORESERVE: Final = 0xFF00

#: ``r0 = 0; exit`` -- BPF_ALU64|BPF_MOV|BPF_K (0xb7) dst r0 imm 0, then BPF_JMP|BPF_EXIT (0x95).
RETURN_0: Final = bytes.fromhex("b7000000000000009500000000000000")

_INSN_SIZE: Final = 8
_EHDR: Final = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
_SHDR: Final = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr, 64 bytes
_SYM: Final = struct.Struct("<IBBHQQ")  # Elf64_Sym, 24 bytes

_E_IDENT: Final = b"\x7fELF" + bytes((ELFCLASS64, ELFDATA2LSB, EV_CURRENT)) + bytes(9)
_SYM_INFO_GLOBAL_FUNC: Final = (STB_GLOBAL << 4) | STT_FUNC
_PROG_FLAGS: Final = SHF_ALLOC | SHF_EXECINSTR
_LICENSE_FLAGS: Final = SHF_ALLOC | SHF_WRITE
_NULL_SHDR: Final = bytes(_SHDR.size)
_NULL_SYM: Final = bytes(_SYM.size)
# Sections the writer adds after the program sections: at most license + 3 tables.
_MAX_PROG_SECTIONS: Final = SHN_LORESERVE - 4

# Names of the fixed sections, appended at the end of .shstrtab in this order.
_TAIL_NAMES: Final = (b"license", b".strtab", b".symtab", b".shstrtab")

_C_IDENT: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*").fullmatch

_sym_pack = _SYM.pack
_shdr_pack = _SHDR.pack


@dataclass(frozen=True, slots=True)
class Program:
    """One BPF program: a global FUNC symbol in an executable section."""

    section: bytes
    """ELF section name, any bytes except NUL (may start with ``?``, may be special)."""
    name: bytes = b""
    """FUNC symbol name, a C identifier; ``b""`` means ``b"prog<index>"``."""
    insns: bytes = RETURN_0
    """Raw BPF instructions, 8 bytes each, at least one."""


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """What goes into an object: its programs and its license."""

    programs: tuple[Program, ...]
    license: bytes | None = b"GPL"
    """License string without the terminating NUL; ``None`` omits the section."""


def _pad8(n: int) -> int:
    return -n & 7


def build_object(spec: ObjectSpec) -> bytes:
    """Serialize ``spec`` to a relocatable little-endian BPF ELF object.

    Raises ValueError when the spec breaks a rule of the module docstring.
    """
    # Group programs by section, in first-appearance order, and check them.
    groups: dict[bytes, list[tuple[bytes, bytes]]] = {}
    seen: set[bytes] = set()
    for index, prog in enumerate(spec.programs):
        section = prog.section
        name = prog.name or b"prog%d" % index
        insns = prog.insns
        if b"\0" in section:
            raise ValueError(f"program {index}: section name contains NUL: {section!r}")
        if _C_IDENT(name) is None:
            raise ValueError(f"program {index}: name is not a C identifier: {name!r}")
        if name in seen:
            raise ValueError(f"program {index}: duplicate program name {name!r}")
        size = len(insns)
        if size == 0 or size % _INSN_SIZE:
            raise ValueError(
                f"program {index}: insns must be a non-empty multiple of 8 bytes, got {size}"
            )
        seen.add(name)
        members = groups.get(section)
        if members is None:
            groups[section] = [(name, insns)]
        else:
            members.append((name, insns))

    if len(groups) > _MAX_PROG_SECTIONS:
        raise ValueError(f"too many sections: {len(groups)} > {_MAX_PROG_SECTIONS}")

    license_ = spec.license
    if license_ is not None and b"\0" in license_:
        raise ValueError(f"license contains NUL: {license_!r}")

    parts: list[bytes] = [b""]  # [0] is the ELF header, filled in last
    shdrs: list[bytes] = [_NULL_SHDR]
    syms: list[bytes] = [_NULL_SYM]
    shstr: list[bytes] = [b""]  # joined with NUL separators, leading NUL from this ""
    shstr_off = 1
    strtab: list[bytes] = [b""]
    str_off = 1
    offset = _EHDR.size  # 64: every program section starts 8-aligned
    shndx = 1

    for section, members in groups.items():
        in_sec = 0
        for name, insns in members:
            size = len(insns)
            syms.append(_sym_pack(str_off, _SYM_INFO_GLOBAL_FUNC, STV_DEFAULT, shndx, in_sec, size))
            strtab.append(name)
            str_off += len(name) + 1
            parts.append(insns)
            in_sec += size
        shdrs.append(
            _shdr_pack(shstr_off, SHT_PROGBITS, _PROG_FLAGS, 0, offset, in_sec, 0, 0, 8, 0)
        )
        shstr.append(section)
        shstr_off += len(section) + 1
        offset += in_sec
        shndx += 1

    if license_ is not None:
        data = license_ + b"\0"
        shdrs.append(
            _shdr_pack(shstr_off, SHT_PROGBITS, _LICENSE_FLAGS, 0, offset, len(data), 0, 0, 1, 0)
        )
        parts.append(data)
        offset += len(data)
        shndx += 1
    shstr_off += 8  # len(b"license\0"): the name is always in the table, used or not

    # .strtab
    strtab.append(b"")  # trailing NUL after the last name
    strtab_data = b"\0".join(strtab)
    strtab_ndx = shndx
    shdrs.append(_shdr_pack(shstr_off, SHT_STRTAB, 0, 0, offset, len(strtab_data), 0, 0, 1, 0))
    parts.append(strtab_data)
    offset += len(strtab_data)
    shstr_off += 8  # b".strtab\0"
    shndx += 1

    # .symtab, 8-aligned
    pad = _pad8(offset)
    if pad:
        parts.append(bytes(pad))
        offset += pad
    symtab_data = b"".join(syms)
    shdrs.append(
        _shdr_pack(
            shstr_off, SHT_SYMTAB, 0, 0, offset, len(symtab_data), strtab_ndx, 1, 8, _SYM.size
        )
    )
    parts.append(symtab_data)
    offset += len(symtab_data)
    shstr_off += 8  # b".symtab\0"
    shndx += 1

    # .shstrtab
    shstr.extend(_TAIL_NAMES)
    shstr.append(b"")
    shstr_data = b"\0".join(shstr)
    shstrndx = shndx
    shdrs.append(_shdr_pack(shstr_off, SHT_STRTAB, 0, 0, offset, len(shstr_data), 0, 0, 1, 0))
    parts.append(shstr_data)
    offset += len(shstr_data)
    shndx += 1

    # Section header table, 8-aligned.
    pad = _pad8(offset)
    if pad:
        parts.append(bytes(pad))
        offset += pad
    parts.extend(shdrs)

    parts[0] = _EHDR.pack(
        _E_IDENT, ET_REL, EM_BPF, EV_CURRENT, 0, 0, offset, 0,
        _EHDR.size, 0, 0, _SHDR.size, shndx, shstrndx,
    )  # fmt: skip
    return b"".join(parts)


_BENCH_SPEC: Final = ObjectSpec(
    programs=(
        Program(b"socket"),
        Program(b"kprobe/do_sys_open"),
        Program(b"?tracepoint/syscalls/sys_enter_openat", name=b"trace_openat"),
    )
)


def bench_objects(n: int = 100_000, spec: ObjectSpec = _BENCH_SPEC) -> float:
    """Build ``spec`` (default: 3 programs in 3 sections) ``n`` times; return objects/s."""
    if n <= 0:
        raise ValueError("n must be positive")
    build = build_object
    start = time.perf_counter()
    for _ in range(n):
        build(spec)
    return n / (time.perf_counter() - start)


if __name__ == "__main__":  # pragma: no cover
    rate = bench_objects()
    print(f"bpfelf: {rate:,.0f} objects/s (3 programs, 3 sections)")
