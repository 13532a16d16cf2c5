"""BPF objects and their programs: open, getters, set_type/set_autoload, load, attach, close.

Follows libbpf.c ``bpf_object__open_mem`` -> ``bpf_object_open`` ->
``bpf_object__elf_collect`` / ``bpf_object__add_programs`` /
``bpf_object__init_prog`` / ``bpf_object_init_progs``, then
``bpf_program__set_type``, ``bpf_program__set_autoload``, ``bpf_object__load``
(``bpf_object__load_progs`` -> ``bpf_object_load_prog``),
``bpf_program__attach`` and ``bpf_object__close`` of 1.1.2, 1.4.6, 1.5.0 and
1.7.0 (and 0.8.3: ``bpf_object__init_user_maps``, ``bpf_object__load_vmlinux_btf``);
where they differ, a named field of ``Profile`` says how (``oracle.model.versions``).

Spec: "`prog_setup_fn`: [...] called after bpf_program is initialized";
"`prog_prepare_load_fn`: [...] right before BPF program is loaded";
"`prog_attach_fn`: [...] by bpf_program__attach()"; each gets the handler's
``cookie``.  The spec says nothing of a registry that changes under an open
object: this model follows what it implies (see "Bindings" below), libbpf does
not (docs/divergences.md D13, D14; docs/known-bugs.md KB3).

Rules:
- Open (``open_object``): an empty buffer is -EINVAL.  Sections are read in
  order; by *name*, before their type: ``license`` (no program), ``version``
  (a program is never 4 bytes: -LIBBPF_ERRNO__FORMAT), ``maps`` (-ENOTSUP;
  with ``Profile.legacy_maps_section`` legacy map definitions, read after the
  scan: ``section_programs``),
  ``.maps`` (needs BTF: once every section is read, -ENOENT, or -EINVAL when
  a ``.BTF`` section holds code, ``bpf_object__init_btf``), ``.BTF``,
  ``.BTF.ext`` (no program, bad BTF is not fatal), ``.debug_*`` and
  ``.rel`` + (``.debug_*``, ``.BTF``, ``.BTF.ext``) (skipped); any other name
  holds programs, one per FUNC symbol, in section then offset order.  A
  leading '?' is stripped from the section name after those checks and turns
  autoload off (``bpf_object__init_prog``).  ``.text`` functions are
  subprograms, invisible to ``bpf_object__next_program``, never set up nor
  loaded -- unless ``Profile.text_program_when_alone`` and the object has
  exactly one function (``prog_is_subprog``).
- Setup (``bpf_object_init_progs``), for each visible program in order:
  ``find_sec_def(section)``; no match -> type UNSPEC, attach type 0, no
  handler; else type and attach type from the handler, and its
  ``prog_setup_fn(prog, cookie)`` if any; a negative return fails the open
  with that value (the calls made so far are still reported).
- ``set_type``: -EBUSY once a load was attempted; then, by
  ``Profile.set_type_resets_handler``: ``never`` only stores the type,
  ``always`` also drops the handler, ``when_changed``: an unchanged type is a
  no-op and a changed one drops the handler unless it is the fallback.
  ``set_autoload``: -EINVAL once a load was attempted, else 0.
- Load (``bpf_object_load``): a second attempt is -EINVAL with nothing
  called; the first marks the object loaded whatever happens.  Without
  ``Profile.reads_enum64_btf``, an autoload program of a type that needs
  vmlinux BTF (``NEEDS_VMLINUX_BTF``) makes it -ESRCH before anything is
  called (this kernel's BTF has ENUM64 kinds: ``bpf_object__load_vmlinux_btf``);
  then an object's legacy maps are created (``bpf_object__create_maps``):
  the first one's type is 0 or no kernel's (``KERNEL_NO_MAP_TYPE_FROM``) ->
  -EINVAL before any program; any other type is not modelled.  Programs load
  in order, skipping autoload-off ones; per program: type UNSPEC -> -EINVAL
  (before the callback); STRUCT_OPS with no attach BTF id -> -EINVAL (before
  the callback) with ``Profile.struct_ops_rejected_early``; then the handler's
  ``prog_prepare_load_fn(prog, opts, cookie)``, a negative return fails the
  load with it (positive ones are ignored); then the kernel (``kernel_load``).
  The first failure unloads every program and is the answer.
- Attach (``bpf_program__attach``): no handler or no ``prog_attach_fn`` ->
  -EOPNOTSUPP; then, with ``Profile.attach_requires_fd``, a program without
  an fd (not loaded) -> -EINVAL; then the callback: a non-zero return is the
  answer (``libbpf_err_ptr`` then ``libbpf_get_error``), 0 with no link
  (the harness never makes one) -> -EOPNOTSUPP.  Without
  ``Profile.clean_error_pointers`` (0.8.x), a return above 0 or below
  -``MAX_ERRNO`` is ``ERR_PTR(ret)``, a bogus link: not modelled.
- Bindings: a program keeps the handler ``find_sec_def`` gave it at open --
  its callbacks, its cookie, its registration -- whatever happens to the
  registry afterwards (what the spec implies; libbpf keeps a pointer into the
  registry instead).

Not modelled (``NotModelledError``): raw object bytes other than what
``oracle.bpfelf`` writes; built-in handlers' load work beyond plain flags and
their attach functions (real kprobes, tracepoints...); kernel answers for
program types whose answer depends on the expected attach type
(``KERNEL_EAT_DEPENDENT``); -ENOMEM.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Final

from oracle.bpfelf import ObjectSpec, Program, build_object
from oracle.errors import BadArgumentError, OracleError
from oracle.model.answers import answer
from oracle.model.lookup import Match, find_sec_def
from oracle.model.registry import Handler, Registry
from oracle.model.versions import Profile
from oracle.ops import (
    NO_BPF,
    NO_OBJECT,
    NO_PROGRAM,
    OUT_ARITY,
    Answer,
    Attach,
    CallbackCall,
    Close,
    LifecycleOp,
    Load,
    Open,
    ProgInfo,
    SetAutoload,
    SetType,
    as_u32,
    check_obj_ref,
)
from oracle.tables import SecDef

LIBBPF_ERRNO__FORMAT: Final = 4001
MAX_ERRNO: Final = 4095  # IS_ERR(): the pointers -4095..-1 are errors
BPF_PROG_TYPE_UNSPEC: Final = 0
BPF_PROG_TYPE_STRUCT_OPS: Final = 27
ENOTSUPP_KERNEL: Final = 524  # the kernel-internal ENOTSUPP, as bpf() returns it


class NotModelledError(OracleError):
    """The op's answer depends on something this model does not cover (see module docs)."""


# ---------------------------------------------------------------------------
# the kernel side: BPF_PROG_LOAD of ``r0 = 0; exit`` (oracle.bpfelf.RETURN_0)

#: program types the kernel loads RETURN_0 for, whatever the expected attach type
#: (measured on Linux 6.18 as root, license "GPL"; tests/lifecycle re-checks them)
KERNEL_LOADS: Final = frozenset({1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 19,
                                 22, 23, 24})
#: types the kernel refuses whatever the expected attach type, and its errno
KERNEL_REFUSES: Final[dict[int, int]] = {
    20: errno.EINVAL, 27: ENOTSUPP_KERNEL, 28: errno.EPERM, 29: errno.EPERM, 31: errno.EINVAL,
}
#: the first type value past this kernel's enum: it and all above are -EINVAL
KERNEL_FIRST_UNKNOWN_TYPE: Final = 32
#: types whose answer depends on the expected attach type: not modelled
KERNEL_EAT_DEPENDENT: Final = frozenset({8, 9, 18, 21, 25, 26, 30})
# (18 CGROUP_SOCK_ADDR, 25 CGROUP_SOCKOPT, 26 TRACING and 30 SK_LOOKUP load RETURN_0
# only with their own attach types, e.g. BPF_CGROUP_INET4_BIND for 18: found by
# the lifecycle fuzzer, fuzz/README.md; measured for every attach type 0..58)
#: ``prog_needs_vmlinux_btf``: STRUCT_OPS, LSM, and TRACING (never with an attach
#: prog fd here).  This kernel's BTF has ``BTF_KIND_ENUM64`` (Linux 6.0 on), which
#: ``Profile.reads_enum64_btf`` says whether libbpf can parse.
NEEDS_VMLINUX_BTF: Final = frozenset({BPF_PROG_TYPE_STRUCT_OPS, 26, 29})
#: no kernel has this many map types (Linux 6.18 has 34): BPF_MAP_CREATE of type 0
#: (UNSPEC) or of one from here on is -EINVAL
KERNEL_NO_MAP_TYPE_FROM: Final = 64
#: built-in sec_def flags whose libbpf_prepare_prog_load work the model covers (none;
#: 0.8.x's SEC_SLOPPY_PFX only matters to find_sec_def, SEC_DEPRECATED only warns)
PLAIN_FLAGS: Final = frozenset({"SEC_NONE", "SEC_ATTACHABLE", "SEC_ATTACHABLE_OPT",
                                "SEC_EXP_ATTACH_OPT", "SEC_SLOPPY_PFX", "SEC_DEPRECATED"})


#: the kernel's license_is_gpl_compatible()
GPL_COMPATIBLE: Final = frozenset({b"GPL", b"GPL v2", b"GPL and additional rights",
                                   b"Dual BSD/GPL", b"Dual MIT/GPL", b"Dual MPL/GPL"})


def kernel_load(prog_type: int, license_: bytes = b"GPL") -> int:
    """The kernel's answer to loading RETURN_0 as ``prog_type``: 0 or -errno.

    The license only matters to STRUCT_OPS here: -ENOTSUPP (524) with a GPL
    license (no attach BTF id), -EINVAL without.
    """
    if prog_type in KERNEL_LOADS:
        return 0
    if prog_type == BPF_PROG_TYPE_STRUCT_OPS and license_ not in GPL_COMPATIBLE:
        return -errno.EINVAL
    if prog_type in KERNEL_REFUSES:
        return -KERNEL_REFUSES[prog_type]
    if prog_type >= KERNEL_FIRST_UNKNOWN_TYPE:
        return -errno.EINVAL
    raise NotModelledError(f"the kernel's answer for program type {prog_type} depends on"
                           " its expected attach type")


# ---------------------------------------------------------------------------
# state


@dataclass(slots=True)
class ProgramState:
    """One visible ``struct bpf_program``."""

    name: bytes
    section: bytes  # without the leading '?'
    prog_type: int = BPF_PROG_TYPE_UNSPEC
    expected_attach_type: int = 0
    autoload: bool = True
    binding: Match | None = None  # prog->sec_def, as the spec implies it (module rules)
    has_fd: bool = False


@dataclass(slots=True)
class ObjectState:
    """One open ``struct bpf_object``."""

    programs: list[ProgramState]
    license: bytes = b"GPL"  # obj->license, as the kernel gets it
    load_attempted: bool = False
    #: the type of the first legacy map definition (Profile.legacy_maps_section)
    first_map_type: int | None = None


@dataclass(slots=True)
class Calls:
    """The callback calls one op makes, in order."""

    made: list[CallbackCall] = field(default_factory=list)

    def call(self, kind: str, handler: Handler, prog: ProgramState, ret: int) -> int:
        self.made.append(CallbackCall(kind, handler.registration, prog.name, prog.section,
                                      handler.opts.cookie, ret))
        return ret


# ---------------------------------------------------------------------------
# reading an object: which sections hold programs


def special_section(name: bytes) -> str | None:
    """What ``bpf_object__elf_collect`` makes of a section *name*, before its type.

    ``"license"``, ``"version"``, ``"maps"``, ``".maps"``, ``"btf"``, ``"skip"``
    (``ignore_elf_section``) or None for a section whose programs are read.
    """
    if name.startswith(b".debug_"):
        return "skip"
    if name.startswith(b".rel"):
        rest = name[4:]
        if rest.startswith(b".debug_") or rest in (b".BTF", b".BTF.ext"):
            return "skip"
    if name in (b".BTF", b".BTF.ext"):
        return "btf"
    return {b"license": "license", b"version": "version", b"maps": "maps",
            b".maps": ".maps"}.get(name)


#: sizeof(struct bpf_map_def): a longer legacy definition must be zero past it
BPF_MAP_DEF_SIZE: Final = 20


def section_programs(spec: ObjectSpec, *, legacy_maps: bool = False
                     ) -> tuple[int, list[tuple[bytes, bytes]]]:
    """``(error, [(section, name), ...])``: every function in program sections, in order.

    Follows ``bpf_object__elf_collect``: the first ``version``/``maps``
    section in section order fails; ``.maps`` fails after the scan.  With
    ``legacy_maps`` (``Profile.legacy_maps_section``) a ``maps`` section is
    not refused: ``bpf_object__init_user_maps`` reads its functions as map
    definitions once the scan is done (one per symbol, the section's size
    split evenly; -EINVAL when it does not split, a definition runs past the
    end, or one longer than ``struct bpf_map_def`` is not zero past it).
    """
    groups: dict[bytes, list[bytes]] = {}
    btf_data: bytes | None = None
    for index, prog in enumerate(spec.programs):
        groups.setdefault(prog.section, []).append(prog.name or b"prog%d" % index)
        if prog.section == b".BTF" and btf_data is None:
            btf_data = prog.insns
    functions: list[tuple[bytes, bytes]] = []
    needs_btf = False
    for section, names in groups.items():
        kind = special_section(section)
        if kind == "version":
            return -LIBBPF_ERRNO__FORMAT, []
        if kind == "maps" and not legacy_maps:
            return -errno.ENOTSUP, []
        needs_btf = needs_btf or kind == ".maps"
        if kind is None:
            functions.extend((section, name) for name in names)
    if needs_btf:
        return btf_error(btf_data), []
    if legacy_maps and b"maps" in groups:  # bpf_object__init_user_maps (strict)
        defs = [p.insns for p in spec.programs if p.section == b"maps"]
        data = b"".join(defs)
        if len(data) % len(defs):
            return -errno.EINVAL, []  # "unable to determine legacy map definition size"
        size, offset = len(data) // len(defs), 0
        for insns in defs:
            if offset + size > len(data) or data[offset + BPF_MAP_DEF_SIZE:offset + size].strip(
                    b"\0"):
                return -errno.EINVAL, []  # "too small" / "unrecognized, non-zero options"
            offset += len(insns)
    return 0, functions


def btf_error(btf_data: bytes | None) -> int:
    """``bpf_object__init_btf`` when BTF is required: -ENOENT without a ``.BTF`` section,
    ``btf__new``'s error (-EINVAL: "invalid BTF magic") for one holding code."""
    if btf_data is None:
        return -errno.ENOENT
    if btf_data[:2] in (b"\x9f\xeb", b"\xeb\x9f"):
        raise NotModelledError("a .BTF section that starts with the BTF magic is not modelled")
    return -errno.EINVAL


def object_license(spec: ObjectSpec) -> bytes:
    """``obj->license``: every ``license`` section in order overwrites it
    (``bpf_object__init_license``: ``libbpf_strlcpy`` into 64 bytes), so a
    program section named ``license`` counts unless the real one follows."""
    license_ = b""
    code = b"".join(p.insns for p in spec.programs if p.section == b"license")
    if code:
        license_ = code.split(b"\0", 1)[0][:63]
    if spec.license is not None:
        license_ = spec.license[:63]
    return license_


def visible_programs(release: Profile, functions: list[tuple[bytes, bytes]]) -> list[ProgramState]:
    """``bpf_object__init_prog`` for each function, without subprograms (``prog_is_subprog``)."""
    alone = release.text_program_when_alone and len(functions) == 1
    programs = []
    for section, name in functions:
        if section == b".text" and not alone:
            continue
        autoload = not section.startswith(b"?")
        programs.append(ProgramState(name, section[1:] if not autoload else section,
                                     autoload=autoload))
    return programs


# ---------------------------------------------------------------------------
# raw bytes: only what oracle.bpfelf writes is modelled

_EHDR: Final = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR: Final = struct.Struct("<IIQQQQIIQQ")
_SYM: Final = struct.Struct("<IBBHQQ")


def _cstr(table: bytes, offset: int) -> bytes:
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)]


LIBBPF_ERRNO__LIBELF: Final = 4000
ELF_MAGIC: Final = b"\x7fELF"
EI_NIDENT: Final = 16
ELF64_EHDR_SIZE: Final = 64


def not_an_elf_object(data: bytes) -> int:
    """What ``bpf_object__elf_init`` answers for bytes that are no whole ELF64 object, or 0.

    libbpf.c ``bpf_object__elf_init``: ``elf_memory()`` NULL -> -LIBBPF_ERRNO__LIBELF;
    ``elf_kind() != ELF_K_ELF`` or a section table past the end (libelf refuses
    it) -> -LIBBPF_ERRNO__FORMAT.  Measured with libelf 0.188 (bookworm) on
    every prefix of bpfelf objects and on random bytes, identical in all four
    releases: no ELF magic, or fewer than ``EI_NIDENT`` bytes -> FORMAT; an ELF64
    little-endian ident but fewer than 64 bytes (no whole ``Elf64_Ehdr``) ->
    LIBELF; a whole header whose section table ends past the data -> FORMAT.
    0: the bytes are not one of these cases (``spec_of_bytes`` decides).
    """
    if not data.startswith(ELF_MAGIC) or len(data) < EI_NIDENT:
        return -LIBBPF_ERRNO__FORMAT
    if data[4] != 2 or data[5] != 1:  # ELFCLASS64, ELFDATA2LSB: what bpfelf writes
        return 0
    if len(data) < ELF64_EHDR_SIZE:
        return -LIBBPF_ERRNO__LIBELF
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shnum and shoff + shnum * shentsize > len(data):
        return -LIBBPF_ERRNO__FORMAT
    return 0


def spec_of_bytes(data: bytes) -> ObjectSpec:
    """The ``ObjectSpec`` that ``build_object`` turns into exactly ``data``.

    Anything else raises ``NotModelledError``: libelf's and libbpf's answers
    to arbitrary bytes are not part of this model.
    """
    try:
        spec = _parse_bpfelf(data)
        if build_object(spec) == data:
            return spec
    except (struct.error, ValueError, IndexError, KeyError):
        pass
    raise NotModelledError("raw object bytes other than oracle.bpfelf's output are not modelled")


def _parse_bpfelf(data: bytes) -> ObjectSpec:
    """Read back sections, FUNC symbols and license of a bpfelf-shaped object."""
    ehdr = _EHDR.unpack_from(data, 0)
    shoff, shnum, shstrndx = ehdr[6], ehdr[12], ehdr[13]
    shdrs = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(shnum)]
    shstr = data[shdrs[shstrndx][4]:shdrs[shstrndx][4] + shdrs[shstrndx][5]]
    names = [_cstr(shstr, sh[0]) for sh in shdrs]
    symtab = next(sh for sh in shdrs if sh[1] == 2)
    strtab = data[shdrs[symtab[6]][4]:shdrs[symtab[6]][4] + shdrs[symtab[6]][5]]
    programs = []
    for i in range(1, symtab[5] // _SYM.size):
        st_name, _info, _other, shndx, value, size = _SYM.unpack_from(data, symtab[4] + i * 24)
        offset = shdrs[shndx][4] + value
        programs.append(Program(names[shndx], _cstr(strtab, st_name), data[offset:offset + size]))
    license_ = None
    if any(sh[1] == 1 and sh[2] == 0x3 and n == b"license" for sh, n in zip(shdrs, names,
                                                                          strict=True)):
        sh = next(sh for sh, n in zip(shdrs, names, strict=True) if n == b"license"
                  and sh[2] == 0x3)
        license_ = data[sh[4]:sh[4] + sh[5] - 1]
    return ObjectSpec(tuple(programs), license_)


# ---------------------------------------------------------------------------
# the objects of one process


class Objects:
    """Every object a sequence opened, indexed by ``ObjRef`` (see module rules)."""

    __slots__ = ("_objects", "bpf", "registry", "release")

    def __init__(self, registry: Registry, release: Profile, *, bpf: bool = True) -> None:
        self.registry = registry
        self.release = release
        self.bpf = bpf
        self._objects: list[ObjectState | None] = []

    def apply(self, op: LifecycleOp) -> Answer:
        """Run one lifecycle op; the harness conventions of ``oracle.ops`` first."""
        if isinstance(op, Open):
            return self.open(op)
        if isinstance(op, Load | Attach) and not self.bpf:
            return answer(NO_BPF)
        obj = self._objects[check_obj_ref(op.obj, len(self._objects))]
        none = (None,) * OUT_ARITY[type(op)]
        if obj is None:
            return answer(NO_OBJECT, none)
        if isinstance(op, Close):
            self._objects[op.obj.index] = None
            return answer(0)
        if isinstance(op, Load):
            return self.load(obj)
        if not 0 <= op.prog < len(obj.programs):
            return answer(NO_PROGRAM, none)
        prog = obj.programs[op.prog]
        if isinstance(op, ProgInfo):
            return answer(0, (prog.name, prog.section, prog.prog_type,
                              prog.expected_attach_type, int(prog.autoload)))
        if isinstance(op, SetType):
            return answer(self.set_type(obj, prog, as_u32(op.prog_type, "prog_type")))
        if isinstance(op, SetAutoload):
            return answer(set_autoload(obj, prog, bool(op.autoload)))
        return self.attach(prog)

    def opened(self) -> int:
        """How many ``Open`` s ran (the next ``ObjRef`` index)."""
        return len(self._objects)

    # -- bpf_object__open_mem ----------------------------------------------------

    def open(self, op: Open) -> Answer:
        """``bpf_object__open_mem``: (0, (programs,)) or (-errno, (None,)), setup calls."""
        self._objects.append(None)
        if isinstance(op.obj, bytes | bytearray):
            if not op.obj:
                return Answer(-errno.EINVAL, (None,))  # !obj_buf_sz
            err = not_an_elf_object(bytes(op.obj))
            if err:
                return Answer(err, (None,))
            spec = spec_of_bytes(bytes(op.obj))
        elif isinstance(op.obj, ObjectSpec):
            spec = op.obj
        else:
            raise BadArgumentError(f"Open needs an ObjectSpec or bytes, not {op.obj!r}")
        legacy_maps = self.release.legacy_maps_section
        err, functions = section_programs(spec, legacy_maps=legacy_maps)
        if err:
            return Answer(err, (None,))
        programs = visible_programs(self.release, functions)
        calls = Calls()
        err = self.init_progs(programs, calls)
        if err:
            return Answer(err, (None,), tuple(calls.made))
        maps = [p.insns for p in spec.programs if p.section == b"maps"] if legacy_maps else []
        self._objects[-1] = ObjectState(programs, object_license(spec),
                                        first_map_type=struct.unpack_from("<I", maps[0])[0]
                                        if maps else None)
        return Answer(0, (len(programs),), tuple(calls.made))

    def init_progs(self, programs: list[ProgramState], calls: Calls) -> int:
        """``bpf_object_init_progs``: bind, set types, call ``prog_setup_fn``; 0 or its error."""
        for prog in programs:
            match = find_sec_def(self.registry, self.release, prog.section)
            if match is None:
                continue
            prog.binding = match
            prog.prog_type = match.prog_type
            prog.expected_attach_type = match.expected_attach_type
            if isinstance(match, SecDef):
                if match.prog_setup_fn is not None:
                    raise NotModelledError(f"built-in {match.prog_setup_fn} is not modelled")
                continue
            setup = match.opts.prog_setup_fn
            if setup is not None and calls.call("prog_setup_fn", match, prog, setup.ret) < 0:
                return setup.ret
        return 0

    # -- bpf_program__set_type ------------------------------------------------------

    def set_type(self, obj: ObjectState, prog: ProgramState, prog_type: int) -> int:
        """``bpf_program__set_type``: -EBUSY after a load attempt, else 0 (module rules)."""
        if obj.load_attempted:
            return -errno.EBUSY
        resets = self.release.set_type_resets_handler
        if resets == "when_changed":
            if prog.prog_type == prog_type:
                return 0
            if not (isinstance(prog.binding, Handler) and prog.binding.sec is None):
                prog.binding = None
        elif resets == "always":
            prog.binding = None
        prog.prog_type = prog_type
        return 0

    # -- bpf_object__load -----------------------------------------------------------

    def load(self, obj: ObjectState) -> Answer:
        """``bpf_object__load``: 0 or the first program's error; prepare calls in order."""
        if obj.load_attempted:
            return Answer(-errno.EINVAL)
        obj.load_attempted = True
        if not self.release.reads_enum64_btf and any(
                p.autoload and p.prog_type in NEEDS_VMLINUX_BTF for p in obj.programs):
            return Answer(-errno.ESRCH)  # btf__load_vmlinux_btf: "failed to find valid kernel BTF"
        if obj.first_map_type is not None:  # bpf_object__create_maps, in symbol order
            if obj.first_map_type and obj.first_map_type < KERNEL_NO_MAP_TYPE_FROM:
                raise NotModelledError("creating a legacy map of a kernel map type is not modelled")
            return Answer(-errno.EINVAL)  # BPF_MAP_CREATE of no map type
        calls = Calls()
        for prog in obj.programs:
            if not prog.autoload:
                continue
            err = self.load_prog(prog, calls, obj.license)
            if err:
                for other in obj.programs:
                    other.has_fd = False  # bpf_object_unload
                return Answer(err, (), tuple(calls.made))
            prog.has_fd = True
        return Answer(0, (), tuple(calls.made))

    def load_prog(self, prog: ProgramState, calls: Calls, license_: bytes) -> int:
        """``bpf_object_load_prog``: libbpf's checks, the prepare callback, the kernel."""
        if prog.prog_type == BPF_PROG_TYPE_UNSPEC:
            return -errno.EINVAL  # "missing BPF prog type, check ELF section name"
        if (self.release.struct_ops_rejected_early
                and prog.prog_type == BPF_PROG_TYPE_STRUCT_OPS):
            return -errno.EINVAL  # "SEC("struct_ops") program isn't referenced anywhere"
        binding = prog.binding
        if isinstance(binding, SecDef):
            check_plain_builtin(binding)
        elif binding is not None and binding.opts.prog_prepare_load_fn is not None:
            ret = calls.call("prog_prepare_load_fn", binding, prog,
                             binding.opts.prog_prepare_load_fn.ret)
            if ret < 0:
                return ret
        return kernel_load(prog.prog_type, license_)

    # -- bpf_program__attach --------------------------------------------------------

    def attach(self, prog: ProgramState) -> Answer:
        """``bpf_program__attach``: -EOPNOTSUPP, -EINVAL (version), or the callback's word."""
        binding = prog.binding
        if isinstance(binding, SecDef):
            if binding.prog_attach_fn is None:
                return Answer(-errno.EOPNOTSUPP)
            if self.release.attach_requires_fd and not prog.has_fd:
                return Answer(-errno.EINVAL)
            raise NotModelledError(f"built-in {binding.prog_attach_fn} attaches in the kernel")
        if binding is None or binding.opts.prog_attach_fn is None:
            return Answer(-errno.EOPNOTSUPP)
        if self.release.attach_requires_fd and not prog.has_fd:
            return Answer(-errno.EINVAL)  # "can't attach BPF program without FD"
        calls = Calls()
        ret = calls.call("prog_attach_fn", binding, prog, binding.opts.prog_attach_fn.ret)
        if not self.release.clean_error_pointers and not -MAX_ERRNO <= ret <= 0:
            raise NotModelledError(f"0.x's ERR_PTR({ret}) is a bogus link, not an error")
        return Answer(ret if ret else -errno.EOPNOTSUPP, (), tuple(calls.made))


def set_autoload(obj: ObjectState, prog: ProgramState, autoload: bool) -> int:
    """``bpf_program__set_autoload``: -EINVAL after a load attempt, else 0."""
    if obj.load_attempted:
        return -errno.EINVAL
    prog.autoload = autoload
    return 0


def check_plain_builtin(sec_def: SecDef) -> None:
    """Refuse a built-in whose ``libbpf_prepare_prog_load`` does more than the model covers."""
    if sec_def.prog_prepare_load_fn != "libbpf_prepare_prog_load" or not set(
        sec_def.flags
    ) <= PLAIN_FLAGS:
        raise NotModelledError(f"loading SEC(\"{sec_def.sec.decode()}\") is not modelled")

