"""Fuzzer bytes -> ops of the op language (``oracle.ops``), and seeds back to bytes.

The decoder is the one place where libFuzzer's bytes become calls; it never
invents an encoding of its own for a call, it builds ``oracle.ops`` values.

Rules:
- Total and deterministic: every byte string decodes to a list of valid ops
  (``HandlerOpts`` buffers hold what libbpf reads, ``HandleRef``/``ObjRef``
  name earlier ops, strings carry no NUL) that the oracle accepts.  A read past
  the end yields zeros; decoding stops at the end of the input or ``MAX_OPS``.
- Version independent: the built-in stems and patterns are the union over every
  release with a table, so a crash file decodes the same for any target.
- Consumed front to back, one byte per choice (``Consumer``): a tag byte picks
  the op kind (``tag % 16`` from ``REGISTRY_SLOTS``; with ``lifecycle=True``
  ``tag % 32``, slots 16..31 being ``LIFECYCLE_SLOTS``), then each argument
  has a spec byte biased towards interesting values (table stems and patterns,
  patterns registered earlier in the input, '/', '+', '.s', '?', NULL, the
  ``sz`` values at each field boundary, zero and non-zero tails, ``HandleRef``
  to earlier registers) with an escape to raw values.
- Lifecycle mode keeps KB3 (docs/known-bugs.md: a registry change under an
  open object) out by construction: a ``Register``/``Unregister`` decoded while
  objects of the input are open is preceded by ``Close`` of each of them.
- ``encode_seed(ops)`` is the inverse for seeds: ``decode(encode_seed(ops)) ==
  ops`` for any op list the decoder can produce (checked; ``ValueError``
  otherwise).  It writes strings literally and opts explicitly, so the seeds
  of ``corpus/fuzz/`` are exact and libFuzzer mutates from there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Final

from oracle.bpfelf import RETURN_0, ObjectSpec, Program, build_object
from oracle.campaign.generate import LONG_NAME
from oracle.ops import (
    OPTS_STRUCT_SIZE,
    Attach,
    AttachTypeByName,
    Callback,
    Close,
    HandleRef,
    HandlerOpts,
    Load,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    ProgTypeByName,
    Register,
    SetAutoload,
    SetType,
    Unregister,
    zero_check_len,
)
from oracle.tables import known_versions, load_table

MAX_OPS: Final = 64
MAX_NAME: Final = LONG_NAME  # as the campaign generator caps its repeats
#: the most tail bytes an opts buffer gets (libbpf reads ``zero_check_len(sz)`` of them)
MAX_TAIL: Final = 4096
SUFFIXES: Final = (b"", b"/", b"+", b"/x", b"/a/b", b".s", b".s/x", b"//", b"/+", b"+/", b"x",
                   b"/LLC-load-misses", b"/do_sys_open", b".multi", b".w", b"?", b".s+", b"/*")
ALPHABET: Final = b"/+.?asx*"
PIECES: Final = (b"a", b"b", b"ab", b"/", b"+", b".", b"?", b"s", b"x/y", b".s")
SZ_CHOICES: Final = (0, 1, 7, 8, 12, 15, 16, 17, 23, 24, 31, 32, 39, 40, 41, 48, 64, 4096,
                     2**63 + 40, 2**64 - 1)
COOKIES: Final = (0, 1, -1, 7, 2**63 - 1, -(2**63), 2**32, 0x5EC)
ENUM_EDGES: Final = (0, 1, 2, 31, 32, 2**31 - 1, 2**31, 2**32 - 1)
#: plain ints for ``Unregister``: 0 and negatives are -EINVAL, the rest mostly -ENOENT
WEIRD_INTS: Final = (0, -1, 1, 2, 3, 1000, -(2**31), 2**31 - 1)
#: program section names libbpf reads specially (lifecycle objects)
SPECIAL_SECTIONS: Final = (b"license", b"version", b"maps", b".maps", b".BTF", b".debug_info",
                           b".text", b".data", b"", b".rel.BTF")
ENUM_DIRECT: Final = 64  # spec bytes below 0xC0 give ``byte % 64``
REF_LIMIT: Final = 0xC0  # spec bytes below this name an earlier op


@functools.cache
def stems() -> tuple[bytes, ...]:
    """Built-in stems (patterns without '/' or '+' at the end), every known release."""
    return tuple(sorted({d.sec.rstrip(b"+/") for v in known_versions()
                         for d in load_table(v).section_defs}))


@functools.cache
def patterns() -> tuple[bytes, ...]:
    """Built-in patterns exactly as in ``section_defs[]``, every known release."""
    return tuple(sorted({d.sec for v in known_versions() for d in load_table(v).section_defs}))


class Consumer:
    """Reads choices from the front of the input; past the end every read is zero."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < len(self.data) else 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "little")

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "little", signed=True)

    def pick_bytes(self, choices: Sequence[bytes]) -> bytes:
        return choices[self.byte() % len(choices)]

    def pick_int(self, choices: Sequence[int]) -> int:
        return choices[self.byte() % len(choices)]


# -- op kinds ------------------------------------------------------------------

REG, UNREG, PTYPE, ATYPE = "register", "unregister", "prog_type", "attach_type"
OPEN, INFO, SETTYPE, AUTOLOAD, LOAD, ATTACH, CLOSE = (
    "open", "prog_info", "set_type", "set_autoload", "load", "attach", "close")
#: ``tag % 16`` -> kind; weights: registers 5, unregisters 3, prog_type 5, attach_type 3
REGISTRY_SLOTS: Final = (REG, PTYPE, REG, PTYPE, UNREG, ATYPE, REG, PTYPE, REG, PTYPE, UNREG,
                         ATYPE, REG, PTYPE, UNREG, ATYPE)
#: ``tag % 32`` in 16..31 -> kind (lifecycle mode only)
LIFECYCLE_SLOTS: Final = (OPEN, INFO, ATTACH, LOAD, OPEN, SETTYPE, CLOSE, INFO, AUTOLOAD, ATTACH,
                          LOAD, OPEN, CLOSE, INFO, SETTYPE, ATTACH)


# -- decoding ------------------------------------------------------------------


class _Decoder:
    def __init__(self, data: bytes, lifecycle: bool) -> None:
        self.c = Consumer(data)
        self.lifecycle = lifecycle
        self.ops: list[Op] = []
        self.seen: list[bytes] = []  # patterns registered so far
        self.registers = 0
        self.opens = 0
        self.open_now: list[int] = []

    def run(self) -> list[Op]:
        c = self.c
        while c.remaining() > 0 and len(self.ops) < MAX_OPS:
            tag = c.byte()
            if self.lifecycle and tag % 32 >= 16:
                self.object_op(LIFECYCLE_SLOTS[tag % 32 - 16])
            else:
                self.registry_op(REGISTRY_SLOTS[tag % 16])
        return self.ops[:MAX_OPS]

    # -- strings ---------------------------------------------------------------

    def string(self) -> bytes | None:
        """A NUL-free name or pattern, or None (C's NULL); see ``encode_string``."""
        c = self.c
        spec = c.byte()
        base, mod = spec & 15, spec >> 4
        text: bytes
        if base == 0:
            return None
        if base in (1, 2, 15):
            text = c.take(c.byte())
        elif base in (3, 4, 5, 14):
            text = c.pick_bytes(stems())
        elif base in (6, 7):
            text = c.pick_bytes(patterns())
        elif base in (8, 9, 10):
            text = (c.pick_bytes(self.seen) if self.seen
                    else c.pick_bytes(stems()))
        elif base == 11:
            text = b""
        elif base == 12:
            text = bytes([ALPHABET[c.byte() % len(ALPHABET)]])
        else:  # 13
            text = b"".join(c.pick_bytes(PIECES) for _ in range(c.byte() % 5))
        text = self.modify(text, mod)
        nul = text.find(b"\0")
        return (text if nul < 0 else text[:nul])[:MAX_NAME]

    def modify(self, text: bytes, mod: int) -> bytes:
        c = self.c
        if mod == 1:
            return text.rstrip(b"+/") + c.pick_bytes(SUFFIXES)
        if mod == 2:
            return text + c.pick_bytes(SUFFIXES)
        if mod == 3:
            return text[: c.byte() % (len(text) + 1)]
        if mod == 4:
            return text + bytes([ALPHABET[c.byte() % len(ALPHABET)]])
        if mod == 5:
            return b"?" + text
        if mod == 6:
            return text.swapcase()
        if mod == 7:
            return text * (2 + c.byte() % 40)
        if mod == 8:
            return text + c.take(c.byte())
        if mod == 9:
            return text[:-1]
        if mod == 10:
            return text[1:]
        if mod == 11:
            return text + b"/" + c.pick_bytes(stems())
        return text  # 0, 12..15

    # -- numbers and opts ------------------------------------------------------------

    def enum(self) -> int:
        c = self.c
        b = c.byte()
        if b < REF_LIMIT:
            return b % ENUM_DIRECT
        if b < 0xFF:
            return ENUM_EDGES[(b - REF_LIMIT) % len(ENUM_EDGES)]
        return c.uint(4)

    def callbacks(self) -> list[Callback | None]:
        c = self.c
        spec = c.byte()
        out: list[Callback | None] = []
        for shift in (0, 2, 4):
            form = (spec >> shift) & 3
            if form == 0:
                out.append(None)
            elif form == 1:
                out.append(Callback(0))
            elif form == 2:
                out.append(Callback(-1))
            else:
                out.append(Callback(c.sint(4)))
        return out

    def opts(self) -> HandlerOpts | None:
        c = self.c
        form = c.byte() & 7
        if form <= 2:
            return None
        cbs = self.callbacks()
        if form <= 4:
            return HandlerOpts(cookie=c.pick_int(COOKIES),
                               prog_setup_fn=cbs[0], prog_prepare_load_fn=cbs[1],
                               prog_attach_fn=cbs[2])
        if form <= 6:
            cookie = c.pick_int(COOKIES)
            sz = c.pick_int(SZ_CHOICES)
            spec = c.byte()
            needed = zero_check_len(sz)
            if needed > MAX_TAIL:
                sz, needed = OPTS_STRUCT_SIZE, 0
            zeros = bytearray(needed + 8 * (spec & 3))
            if zeros and spec >> 2:
                zeros[(spec >> 2) % len(zeros)] = 1 + spec % 255
            return HandlerOpts(sz=sz, cookie=cookie, prog_setup_fn=cbs[0],
                               prog_prepare_load_fn=cbs[1], prog_attach_fn=cbs[2],
                               tail=bytes(zeros))
        sz = c.uint(8)
        cookie = c.sint(8)
        tail = c.take(c.uint(2) % (MAX_TAIL + 1))
        needed = zero_check_len(sz)
        if needed > MAX_TAIL:
            sz = OPTS_STRUCT_SIZE + sz % (MAX_TAIL + 1)
            needed = zero_check_len(sz)
        tail = tail.ljust(needed, b"\0")
        return HandlerOpts(sz=sz, cookie=cookie, prog_setup_fn=cbs[0],
                           prog_prepare_load_fn=cbs[1], prog_attach_fn=cbs[2], tail=tail)

    def handler(self) -> HandleRef | int:
        c = self.c
        b = c.byte()
        if b < REF_LIMIT and self.registers:
            return HandleRef(b % self.registers)
        if b < 0xFF:
            return WEIRD_INTS[b % len(WEIRD_INTS)]
        return c.sint(4)

    # -- ops ----------------------------------------------------------------------

    def registry_op(self, kind: str) -> None:
        if kind in (REG, UNREG) and self.open_now:  # KB3: no registry change under an object
            self.ops.extend(Close(ObjRef(i)) for i in self.open_now)
            self.open_now.clear()
        if kind == REG:
            sec = self.string()
            prog_type, attach_type = self.enum(), self.enum()
            self.ops.append(Register(sec, prog_type, attach_type, self.opts()))
            self.registers += 1
            if sec is not None:
                self.seen.append(sec)
        elif kind == UNREG:
            self.ops.append(Unregister(self.handler()))
        elif kind == PTYPE:
            self.ops.append(ProgTypeByName(self.string()))
        else:
            self.ops.append(AttachTypeByName(self.string()))

    def section(self) -> bytes:
        name = self.string()
        if name is None:
            return self.c.pick_bytes(SPECIAL_SECTIONS)
        return name

    def object_op(self, kind: str) -> None:
        c = self.c
        if kind == OPEN or not self.opens:
            spec = c.byte()
            obj: ObjectSpec | bytes
            if spec == 0xFF:
                obj = b""
            else:
                sections = [self.section() for _ in range(1 + ((spec >> 2) & 3) % 3)]
                programs = tuple(Program(sections[c.byte() % len(sections)])
                                 for _ in range((spec & 3) + (spec >> 7)))
                obj = ObjectSpec(programs, None if spec & 0x60 == 0x60 else b"GPL")
                if spec == 0xFE:
                    obj = build_object(obj)
            self.ops.append(Open(obj))
            self.open_now.append(self.opens)
            self.opens += 1
            return
        ref = ObjRef(c.byte() % self.opens)
        prog = c.byte() % 6
        if kind == INFO:
            self.ops.append(ProgInfo(ref, prog))
        elif kind == SETTYPE:
            self.ops.append(SetType(ref, prog, self.enum()))
        elif kind == AUTOLOAD:
            self.ops.append(SetAutoload(ref, prog, bool(c.byte() & 1)))
        elif kind == LOAD:
            self.ops.append(Load(ref))
        elif kind == ATTACH:
            self.ops.append(Attach(ref, prog))
        else:
            self.ops.append(Close(ref))
            if ref.index in self.open_now:
                self.open_now.remove(ref.index)


def decode(data: bytes, *, lifecycle: bool = False) -> list[Op]:
    """The ops ``data`` stands for (see module rules)."""
    return _Decoder(bytes(data), lifecycle).run()


# -- encoding seeds --------------------------------------------------------------


def _u(value: int, size: int) -> bytes:
    return (value % (1 << (8 * size))).to_bytes(size, "little")


def encode_string(value: bytes | None) -> bytes:
    """A string as the decoder reads it: NULL, or literal (base 1), longer ones with mod 8."""
    if value is None:
        return b"\0"
    if b"\0" in value or len(value) > 2 * 255:
        raise ValueError(f"{value!r}: not a C string the decoder can produce")
    head, rest = value[:255], value[255:]
    if not rest:
        return bytes([0x01, len(head)]) + head
    return bytes([0x81, len(head)]) + head + bytes([len(rest)]) + rest


def encode_enum(value: int) -> bytes:
    if value < ENUM_DIRECT:
        return bytes([value])
    if value in ENUM_EDGES:
        return bytes([REF_LIMIT + ENUM_EDGES.index(value)])
    return b"\xff" + _u(value, 4)


def encode_callbacks(cbs: Sequence[Callback | None]) -> bytes:
    spec, extra = 0, b""
    for shift, cb in zip((0, 2, 4), cbs, strict=True):
        if cb is None:
            continue
        if cb.ret == 0:
            spec |= 1 << shift
        elif cb.ret == -1:
            spec |= 2 << shift
        else:
            spec |= 3 << shift
            extra += _u(cb.ret, 4)
    return bytes([spec]) + extra


def encode_opts(opts: HandlerOpts | None) -> bytes:
    if opts is None:
        return b"\0"
    if len(opts.tail) > MAX_TAIL:
        raise ValueError("opts tail longer than the decoder makes")
    cbs = encode_callbacks((opts.prog_setup_fn, opts.prog_prepare_load_fn, opts.prog_attach_fn))
    return (b"\x07" + cbs + _u(opts.sz, 8) + _u(opts.cookie, 8) + _u(len(opts.tail), 2)
            + opts.tail)


def encode_handler(handler: HandleRef | int, registers: int) -> bytes:
    if isinstance(handler, HandleRef):
        if not 0 <= handler.index < min(registers, REF_LIMIT):
            raise ValueError(f"{handler} cannot be encoded after {registers} registers")
        return bytes([handler.index])
    if handler in WEIRD_INTS:
        want = WEIRD_INTS.index(handler)
        byte = next(b for b in range(REF_LIMIT, 0xFF) if b % len(WEIRD_INTS) == want)
        return bytes([byte])
    return b"\xff" + _u(handler, 4)


def _slot(kind: str, lifecycle: bool) -> bytes:
    if kind in REGISTRY_SLOTS:
        return bytes([REGISTRY_SLOTS.index(kind)])
    if not lifecycle:
        raise ValueError(f"{kind} ops need lifecycle=True")
    return bytes([16 + LIFECYCLE_SLOTS.index(kind)])


def encode_seed(ops: Sequence[Op], *, lifecycle: bool = False) -> bytes:
    """Bytes that ``decode`` turns back into exactly ``ops`` (``ValueError`` if none)."""
    out = bytearray()
    registers = opens = 0
    for op in ops:
        if isinstance(op, Register):
            out += _slot(REG, lifecycle) + encode_string(op.sec) + encode_enum(op.prog_type)
            out += encode_enum(op.exp_attach_type) + encode_opts(op.opts)
            registers += 1
        elif isinstance(op, Unregister):
            out += _slot(UNREG, lifecycle) + encode_handler(op.handler, registers)
        elif isinstance(op, ProgTypeByName):
            out += _slot(PTYPE, lifecycle) + encode_string(op.name)
        elif isinstance(op, AttachTypeByName):
            out += _slot(ATYPE, lifecycle) + encode_string(op.name)
        elif isinstance(op, Open):
            out += _slot(OPEN, lifecycle) + _encode_object(op.obj)
            opens += 1
        elif isinstance(op, ProgInfo | SetType | SetAutoload | Load | Attach | Close):
            kind = {ProgInfo: INFO, SetType: SETTYPE, SetAutoload: AUTOLOAD, Load: LOAD,
                    Attach: ATTACH, Close: CLOSE}[type(op)]
            out += _slot(kind, lifecycle) + bytes([op.obj.index % 256])
            if isinstance(op, ProgInfo | SetType | SetAutoload | Attach):
                out += bytes([op.prog])
            if isinstance(op, SetType):
                out += encode_enum(op.prog_type)
            elif isinstance(op, SetAutoload):
                out += bytes([int(op.autoload)])
        else:
            raise ValueError(f"{type(op).__name__} ops are not fuzzed")
    data = bytes(out)
    if decode(data, lifecycle=lifecycle) != list(ops):
        raise ValueError("these ops are not what the decoder produces for any input")
    return data


def _encode_object(obj: ObjectSpec | bytes) -> bytes:
    if obj == b"":
        return b"\xff"
    if not isinstance(obj, ObjectSpec):
        raise ValueError("raw object bytes other than b'' cannot be encoded")
    progs = obj.programs
    sections = list(dict.fromkeys(p.section for p in progs)) or [b"x"]
    if any(p.name or p.insns != RETURN_0 for p in progs) or len(sections) > 3 or len(progs) > 4:
        raise ValueError("objects are encoded with up to 4 default programs in 3 sections")
    count = len(progs) if len(progs) < 4 else 0x83
    spec = count | (len(sections) - 1) << 2 | (0x60 if obj.license is None else 0)
    if obj.license not in (None, b"GPL") or spec >= 0xFE:
        raise ValueError("objects are encoded with license GPL or none")
    out = bytes([spec])
    for section in sections:
        out += encode_string(section)
    for p in progs:
        out += bytes([sections.index(p.section)])
    return out

