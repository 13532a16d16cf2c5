"""Generate ``oracle/tables/data/libbpf-<version>.json`` from libbpf's own source.

Usage::

    python -m oracle.tables.generate [--version V ...] [--source DIR] [--orig TARBALL] [--out DIR]

Rules:
- Nothing here is typed in by hand: ``section_defs[]``, ``enum sec_def_flags``
  and the member order of ``struct bpf_sec_def`` are parsed from
  ``src/libbpf.c``; ``enum bpf_prog_type`` and ``enum bpf_attach_type`` from
  ``include/uapi/linux/bpf.h`` of the same tarball.
- ``SEC_DEF(...)`` entries are expanded with the ``#define SEC_DEF`` body found
  in the source (parameters, ``##`` pasting, ``__VA_ARGS__``) and the result is
  read as a C designated initializer of ``struct bpf_sec_def``: positional
  values continue after the last designated member, later values override
  earlier ones.
- Parsing is exact or it fails: an unknown identifier, an unexpected token, a
  preprocessor conditional inside a parsed body, zero entries, or an entry
  count different from the number of ``SEC_DEF(`` occurrences inside the
  ``section_defs[]`` initializer raise ``SourceParseError``.
- Output is deterministic (no paths, no times); the same tree and tarball give
  the same bytes.  Provenance: format, generator version, libbpf and Debian
  versions, sha256 of the orig tarball (or null when unknown) and of the two
  parsed files.
- Sources: by default ``oracle.libbpf.debsrc.source_tree`` (Debian's source
  package, cached).  ``--source DIR`` takes an unpacked tree (one version) or
  a directory of trees named by version (``DIR/<version>/src/libbpf.c``).  The
  orig tarball is ``--orig`` or ``libbpf_<version>.orig.tar.gz`` next to the
  tree; when found, its copies of the parsed files must equal the tree's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from oracle.errors import OracleError

FORMAT_NAME: Final = "libbpf-sec-oracle/tables"
FORMAT_VERSION: Final = 1
GENERATOR_VERSION: Final = 1
DATA_DIR: Final = Path(__file__).resolve().parent / "data"

LIBBPF_C: Final = "src/libbpf.c"
BPF_H: Final = "include/uapi/linux/bpf.h"

#: the members a ``SEC_DEF`` may initialize, with the C type each must have
SEC_DEF_MEMBER_TYPES: Final[Mapping[str, str]] = {
    "sec": "char *",
    "prog_type": "enum bpf_prog_type",
    "expected_attach_type": "enum bpf_attach_type",
    "cookie": "long",
    "prog_setup_fn": "libbpf_prog_setup_fn_t",
    "prog_prepare_load_fn": "libbpf_prog_prepare_load_fn_t",
    "prog_attach_fn": "libbpf_prog_attach_fn_t",
}
FN_MEMBERS: Final = ("prog_setup_fn", "prog_prepare_load_fn", "prog_attach_fn")
C_TYPE_WORDS: Final = frozenset(
    {"char", "short", "int", "long", "unsigned", "signed", "const", "void", "enum", "struct"}
)


class SourceParseError(ValueError):
    """libbpf's source did not parse exactly; the data would not be trustworthy."""


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    """One C token: ``kind`` is ident, number, string, char, punct or directive."""

    kind: str
    text: str
    pos: int


_TOKEN_RE: Final = re.compile(
    r"""
      (?P<ws>[ \t\r\f\v]+|\\?\n)
    | (?P<comment>/\*.*?\*/|//[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<char>'(?:[^'\\\n]|\\.)*')
    | (?P<number>(?:0[xX][0-9a-fA-F]+|[0-9]+)[uUlL]*)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>\#\#|<<|>>|->|\.\.\.|[{}()\[\];,.=|&*+\-~<>!?:/%^\#])
    """,
    re.VERBOSE | re.DOTALL,
)
_DIRECTIVE_RE: Final = re.compile(r"\#(?:[^\n\\]|\\.)*", re.DOTALL)
_COMMENT_RE: Final = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def tokenize(text: str) -> list[Token]:
    """C tokens of ``text`` without whitespace and comments.

    A ``#`` first on its line starts a preprocessor directive, kept whole (with
    its continuation lines) as one ``directive`` token.
    """
    tokens: list[Token] = []
    pos = 0
    line_start = True
    while pos < len(text):
        if line_start and text[pos] == "#":
            directive = _DIRECTIVE_RE.match(text, pos)
            assert directive is not None  # "#" always matches
            tokens.append(Token("directive", directive.group(), pos))
            pos = directive.end()
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SourceParseError(f"cannot tokenize C source at {_context(text, pos)}")
        kind = match.lastgroup or ""
        if kind == "ws":
            line_start = line_start or match.group() == "\n"
        elif kind != "comment":
            tokens.append(Token(kind, match.group(), pos))
            line_start = False
        pos = match.end()
    return tokens


def _context(text: str, pos: int) -> str:
    """``line N: <that line>`` for error messages."""
    line_no = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return f"line {line_no}: {text[start : end if end >= 0 else None].strip()!r}"


def _show(tokens: Sequence[Token]) -> str:
    """Tokens joined back into readable text."""
    return " ".join(token.text for token in tokens)


def _is(token: Token, text: str) -> bool:
    """Whether ``token`` is the punctuator or identifier ``text``."""
    return token.kind in ("punct", "ident") and token.text == text


def find_sequence(tokens: Sequence[Token], texts: Sequence[str]) -> list[int]:
    """Indexes where the token texts ``texts`` occur in a row."""
    hits = []
    for i in range(len(tokens) - len(texts) + 1):
        if all(_is(tokens[i + k], t) for k, t in enumerate(texts)):
            hits.append(i)
    return hits


def matching_close(tokens: Sequence[Token], open_index: int) -> int:
    """Index of the bracket closing the one at ``open_index`` (any of ``([{``)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    for i in range(open_index, len(tokens)):
        token = tokens[i]
        if token.kind != "punct":
            continue
        if token.text in pairs:
            stack.append(pairs[token.text])
        elif token.text in pairs.values():
            if not stack or stack.pop() != token.text:
                raise SourceParseError(
                    f"unbalanced {token.text!r} in {_show(tokens[i - 5 : i + 1])}"
                )
            if not stack:
                return i
    raise SourceParseError(f"no closing bracket for {_show(tokens[open_index : open_index + 6])}")


def split_top_level(tokens: Sequence[Token], separator: str) -> list[list[Token]]:
    """``tokens`` split at ``separator`` punctuators outside any brackets."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "punct" and token.text in "([{":
            depth += 1
        elif token.kind == "punct" and token.text in ")]}":
            depth -= 1
        if depth == 0 and token.kind == "punct" and token.text == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def braced_body(tokens: Sequence[Token], head: Sequence[str], what: str) -> list[Token]:
    """Tokens inside the ``{ ... }`` that follows the only occurrence of ``head``."""
    hits = find_sequence(tokens, [*head, "{"])
    if len(hits) != 1:
        raise SourceParseError(f"expected one {what}, found {len(hits)}")
    open_index = hits[0] + len(head)
    return list(tokens[open_index + 1 : matching_close(tokens, open_index)])


def no_directives(body: Sequence[Token], what: str, allow_define: bool = False) -> list[Token]:
    """``body`` without ``#define`` lines (if allowed); any other directive is an error."""
    kept = []
    for token in body:
        if token.kind != "directive":
            kept.append(token)
        elif not (allow_define and re.match(r"#\s*define\b", token.text)):
            raise SourceParseError(f"preprocessor directive inside {what}: {token.text!r}")
    return kept


# --------------------------------------------------------------------------- expressions


class IntExpr:
    """Evaluate a C integer constant expression over named constants.

    Supports literals, names, parentheses, casts to plain C types, unary
    ``- + ~``, and binary ``* + - << >> & ^ |`` with C precedence.  ``names``
    lists every identifier read, in order.
    """

    _LEVELS: Final = (("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*",))

    def __init__(self, tokens: Sequence[Token], lookup: Callable[[str], int | None]) -> None:
        self.tokens = list(tokens)
        self.lookup = lookup
        self.pos = 0
        self.names: list[str] = []

    def evaluate(self) -> int:
        """The value; every token must be consumed."""
        if not self.tokens:
            raise SourceParseError("empty integer expression")
        value = self._binary(0)
        if self.pos != len(self.tokens):
            raise SourceParseError(f"unexpected {self.tokens[self.pos].text!r} in {self._text()}")
        return value

    def _text(self) -> str:
        """The expression, for error messages."""
        return repr(_show(self.tokens))

    def _peek(self) -> Token | None:
        """The next token, or None at the end."""
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _binary(self, level: int) -> int:
        """A left-associative chain of the operators of ``_LEVELS[level]``."""
        if level == len(self._LEVELS):
            return self._unary()
        value = self._binary(level + 1)
        while (token := self._peek()) is not None and token.kind == "punct":
            if token.text not in self._LEVELS[level]:
                break
            self.pos += 1
            value = _apply(token.text, value, self._binary(level + 1))
        return value

    def _unary(self) -> int:
        """A unary operator or a cast applied to an operand, or a primary."""
        token = self._peek()
        if token is None:
            raise SourceParseError(f"truncated integer expression {self._text()}")
        if token.kind == "punct" and token.text in ("-", "+", "~"):
            self.pos += 1
            operand = self._unary()
            return {"-": -operand, "+": operand, "~": ~operand}[token.text]
        cast_end = _cast_end(self.tokens, self.pos)
        if cast_end is not None:
            self.pos = cast_end
            return self._unary()
        return self._primary()

    def _primary(self) -> int:
        """A literal, a name or a parenthesized expression."""
        token = self.tokens[self.pos]
        self.pos += 1
        if token.kind == "number":
            return parse_c_int(token.text)
        if token.kind == "ident":
            value = self.lookup(token.text)
            if value is None:
                raise SourceParseError(f"unresolvable name {token.text!r} in {self._text()}")
            self.names.append(token.text)
            return value
        if _is(token, "("):
            close = matching_close(self.tokens, self.pos - 1)
            inner = IntExpr(self.tokens[self.pos : close], self.lookup)
            value = inner.evaluate()
            self.names.extend(inner.names)
            self.pos = close + 1
            return value
        raise SourceParseError(f"unexpected {token.text!r} in integer expression {self._text()}")


def _apply(operator: str, left: int, right: int) -> int:
    """``left <operator> right`` for the binary operators ``IntExpr`` knows."""
    operations: dict[str, Callable[[int, int], int]] = {
        "|": lambda a, b: a | b,
        "^": lambda a, b: a ^ b,
        "&": lambda a, b: a & b,
        "<<": lambda a, b: a << b,
        ">>": lambda a, b: a >> b,
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
    }
    return operations[operator](left, right)


def _cast_end(tokens: Sequence[Token], start: int) -> int | None:
    """If a cast like ``(long)`` or ``(char *)`` starts at ``start``, the index after it."""
    if start >= len(tokens) or not _is(tokens[start], "("):
        return None
    close = matching_close(tokens, start)
    inner = tokens[start + 1 : close]
    if not inner or inner[0].text not in C_TYPE_WORDS or close + 1 >= len(tokens):
        return None
    if tokens[start + 1].text in ("enum", "struct"):
        inner = inner[2:] if len(inner) >= 2 and inner[1].kind == "ident" else inner
    if all(t.text in C_TYPE_WORDS or _is(t, "*") for t in inner):
        return close + 1
    return None


def strip_casts(tokens: Sequence[Token]) -> list[Token]:
    """``tokens`` without leading casts."""
    start = 0
    while (end := _cast_end(tokens, start)) is not None:
        start = end
    return list(tokens[start:])


def parse_c_int(text: str) -> int:
    """The value of a C integer literal (decimal, hex or octal, any suffix)."""
    digits = text.rstrip("uUlL")
    if digits.lower().startswith("0x"):
        return int(digits, 16)
    if len(digits) > 1 and digits.startswith("0"):
        return int(digits, 8)
    return int(digits, 10)


# --------------------------------------------------------------------------- C declarations


@dataclass(frozen=True, slots=True)
class CEnum:
    """An enum's enumerators in source order, without a ``__MAX_`` sentinel."""

    name: str
    enumerators: tuple[tuple[str, int], ...]
    max: int | None

    def value_of(self, name: str) -> int | None:
        """The value of enumerator ``name``, or None."""
        return dict(self.enumerators).get(name)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: enumerators as ``[name, value]`` pairs in source order."""
        return {"enumerators": [list(pair) for pair in self.enumerators], "max": self.max}


def parse_enum(tokens: Sequence[Token], name: str) -> CEnum:
    """``enum <name> { ... }``: implicit and explicit values, names defined from others."""
    body = no_directives(braced_body(tokens, ["enum", name], f"enum {name}"), f"enum {name}", True)
    values: dict[str, int] = {}
    sentinel: int | None = None
    following = 0
    for part in split_top_level(body, ","):
        if not part:
            continue
        if part[0].kind != "ident" or (len(part) > 1 and not _is(part[1], "=")):
            raise SourceParseError(f"enum {name}: cannot read enumerator {_show(part)!r}")
        value = IntExpr(part[2:], values.get).evaluate() if len(part) > 1 else following
        following = value + 1
        if part[0].text.startswith("__MAX_"):
            if sentinel is not None:
                raise SourceParseError(f"enum {name}: more than one __MAX_ sentinel")
            sentinel = value
        elif part[0].text in values:
            raise SourceParseError(f"enum {name}: {part[0].text} defined twice")
        else:
            values[part[0].text] = value
    if not values:
        raise SourceParseError(f"enum {name} has no enumerators")
    return CEnum(name, tuple(values.items()), sentinel)


def parse_struct_members(tokens: Sequence[Token], name: str) -> list[tuple[str, str]]:
    """``struct <name> { ... }``: ``(member, type text)`` in declaration order."""
    body = no_directives(braced_body(tokens, ["struct", name], f"struct {name}"), f"struct {name}")
    members = []
    for decl in split_top_level(body, ";"):
        if not decl:
            continue
        odd = [t.text for t in decl if t.kind == "punct" and t.text not in ("*",)]
        if odd or len(decl) < 2 or decl[-1].kind != "ident":
            raise SourceParseError(f"struct {name}: unsupported member {_show(decl)!r}")
        members.append((decl[-1].text, " ".join(t.text for t in decl[:-1])))
    if not members:
        raise SourceParseError(f"struct {name} has no members")
    return members


@dataclass(frozen=True, slots=True)
class Macro:
    """A function-like macro: parameter names, whether it is variadic, body tokens."""

    params: tuple[str, ...]
    variadic: bool
    body: tuple[Token, ...]

    def expand(self, args: Sequence[Sequence[Token]]) -> list[Token]:
        """The body with ``args`` substituted, ``##`` pasted and ``__VA_ARGS__`` filled."""
        if len(args) < len(self.params) or (len(args) > len(self.params) and not self.variadic):
            raise SourceParseError(f"macro wants {len(self.params)} arguments, got {len(args)}")
        bound: dict[str, list[Token]] = {
            p: list(a) for p, a in zip(self.params, args, strict=False)
        }
        if self.variadic:
            rest: list[Token] = []
            for i, arg in enumerate(args[len(self.params) :]):
                rest.extend([Token("punct", ",", arg[0].pos if arg else 0)] if i else [])
                rest.extend(arg)
            bound["__VA_ARGS__"] = rest
        out: list[Token] = []
        paste = False
        for token in self.body:
            if _is(token, "##"):
                paste = True
                continue
            if _is(token, "#"):
                raise SourceParseError("stringizing (#) in a macro body is not supported")
            pieces = bound.get(token.text, [token]) if token.kind == "ident" else [token]
            if paste:
                if not out or not pieces:
                    raise SourceParseError("## with an empty operand is not supported")
                out[-1:], pieces = [_paste(out[-1], pieces[0])], pieces[1:]
                paste = False
            out.extend(pieces)
        return out


def _paste(left: Token, right: Token) -> Token:
    """``left ## right`` as one identifier token."""
    text = left.text + right.text
    if not re.fullmatch(r"[A-Za-z_]\w*", text):
        raise SourceParseError(f"pasting {left.text!r} and {right.text!r} gives no identifier")
    return Token("ident", text, left.pos)


def parse_macro(tokens: Sequence[Token], name: str) -> Macro:
    """The only ``#define <name>(...)`` among the directive tokens."""
    pattern = re.compile(rf"#\s*define\s+{re.escape(name)}\(")
    found = [t for t in tokens if t.kind == "directive" and pattern.match(t.text)]
    if len(found) != 1:
        raise SourceParseError(f"expected one #define {name}(...), found {len(found)}")
    directive = found[0]
    inner = tokenize(directive.text[directive.text.index(name) :])
    close = matching_close(inner, 1)
    params = [p for p in split_top_level(inner[2:close], ",") if p]
    if any(len(p) != 1 for p in params):
        raise SourceParseError(f"#define {name}: odd parameter list {_show(inner[: close + 1])!r}")
    names = [p[0].text for p in params]
    variadic = bool(names) and names[-1] == "..."
    return Macro(tuple(names[:-1] if variadic else names), variadic, tuple(inner[close + 1 :]))


# --------------------------------------------------------------------------- section_defs


@dataclass(frozen=True, slots=True)
class Sources:
    """What the parsers need from the two files."""

    libbpf_c: str
    libbpf_tokens: list[Token]
    flags: CEnum
    prog_types: CEnum
    attach_types: CEnum
    members: list[tuple[str, str]]
    macro: Macro


def designated_initializer(
    tokens: Sequence[Token], members: Sequence[str]
) -> tuple[dict[str, list[Token]], str | None]:
    """Read ``{ .m = v, v2, ... }`` against the member order.

    Returns member -> value tokens (later initializers win, as in C) and the
    member a positional value right after ``__VA_ARGS__`` would land on.
    """
    if not tokens or not _is(tokens[0], "{") or matching_close(tokens, 0) != len(tokens) - 1:
        raise SourceParseError(f"not a brace initializer: {_show(tokens)!r}")
    parts = split_top_level(tokens[1:-1], ",")
    if parts and not parts[-1]:
        parts.pop()  # a trailing comma
    values: dict[str, list[Token]] = {}
    cursor = 0
    for part in parts:
        if not part:
            raise SourceParseError(f"empty initializer in {_show(tokens)!r}")
        if _is(part[0], "."):
            if len(part) < 4 or part[1].kind != "ident" or not _is(part[2], "="):
                raise SourceParseError(f"bad designator {_show(part)!r}")
            if part[1].text not in members:
                raise SourceParseError(f"no member {part[1].text!r} in struct bpf_sec_def")
            cursor = members.index(part[1].text)
            part = part[3:]
        elif _is(part[0], "["):
            raise SourceParseError(f"array designator in {_show(part)!r}")
        if cursor >= len(members):
            raise SourceParseError(f"too many initializers in {_show(tokens)!r}")
        values[members[cursor]] = part
        cursor += 1
    return values, (members[cursor] if cursor < len(members) else None)


def macro_positional_start(sources: Sources) -> str:
    """The member the first positional ``__VA_ARGS__`` value initializes, from the macro body."""
    body = list(sources.macro.body)
    va = [i for i, t in enumerate(body) if _is(t, "__VA_ARGS__")]
    tail = [t.text for t in body[va[0] + 1 :]] if len(va) == 1 else []
    if len(va) != 1 or not _is(body[va[0] - 1], ",") or tail != ["}"]:
        raise SourceParseError("SEC_DEF body does not end its initializers with __VA_ARGS__")
    head = [*body[: va[0]], Token("punct", "}", 0)]
    marker = Macro(sources.macro.params, False, tuple(head))
    dummy = [[Token("number", "0", 0)] for _ in sources.macro.params]
    _, start = designated_initializer(marker.expand(dummy), [m for m, _ in sources.members])
    if start is None:
        raise SourceParseError("SEC_DEF leaves no member for __VA_ARGS__")
    return start


def section_def_calls(sources: Sources) -> list[list[list[Token]]]:
    """The argument lists of the ``SEC_DEF(...)`` entries of ``section_defs[]``, in order."""
    head = ["bpf_sec_def", "section_defs", "[", "]", "="]
    body = no_directives(braced_body(sources.libbpf_tokens, head, "section_defs[]"), "section_defs")
    parts = split_top_level(body, ",")
    if parts and not parts[-1]:
        parts.pop()
    calls = []
    for part in parts:
        if len(part) < 3 or not _is(part[0], "SEC_DEF") or not _is(part[1], "("):
            raise SourceParseError(f"section_defs entry is not SEC_DEF(...): {_show(part)!r}")
        if matching_close(part, 1) != len(part) - 1:
            raise SourceParseError(f"trailing tokens after SEC_DEF(...): {_show(part)!r}")
        calls.append(split_top_level(part[2:-1], ","))
    if not calls:
        raise SourceParseError("section_defs[] has no entries")
    expected = count_sec_def_calls(sources.libbpf_c)
    if len(calls) != expected:
        raise SourceParseError(f"parsed {len(calls)} section_defs, source has {expected} SEC_DEF(")
    return calls


def count_sec_def_calls(libbpf_c: str) -> int:
    """``SEC_DEF(`` occurrences in the comment-stripped ``section_defs[]`` initializer text.

    Found by plain text search, independently of the tokenizer, as a cross-check.
    """
    text = _COMMENT_RE.sub(" ", libbpf_c)
    start = re.search(r"\bsection_defs\s*\[\s*\]\s*=\s*\{", text)
    if start is None:
        raise SourceParseError("no section_defs[] initializer in the text")
    end = re.search(r"\n\s*\}\s*;", text[start.end() :])
    if end is None:
        raise SourceParseError("section_defs[] initializer does not end with '};'")
    return len(re.findall(r"\bSEC_DEF\s*\(", text[start.end() : start.end() + end.start()]))


def enum_operand(tokens: Sequence[Token], enum: CEnum) -> dict[str, Any]:
    """``{"name", "value"}`` of an enum-typed initializer; a literal has name null."""
    tokens = strip_casts(tokens)
    if len(tokens) == 1 and tokens[0].kind == "ident":
        value = enum.value_of(tokens[0].text)
        if value is None:
            raise SourceParseError(f"{tokens[0].text!r} is not in enum {enum.name}")
        return {"name": tokens[0].text, "value": value}
    return {"name": None, "value": IntExpr(tokens, lambda _: None).evaluate()}


def string_operand(tokens: Sequence[Token]) -> str:
    """The text of a (possibly cast, possibly concatenated) plain string literal."""
    tokens = strip_casts(tokens)
    if not tokens or any(t.kind != "string" for t in tokens):
        raise SourceParseError(f"not a string literal: {_show(tokens)!r}")
    text = "".join(t.text[1:-1] for t in tokens)
    if "\\" in text:
        raise SourceParseError(f"escape sequences in section name {text!r} are not supported")
    return text


def function_operand(tokens: Sequence[Token], sources: Sources) -> str | None:
    """The C function an initializer names (checked to be called or declared), or None for NULL."""
    tokens = strip_casts(tokens)
    if len(tokens) == 1 and (tokens[0].text in ("NULL", "0")):
        return None
    if len(tokens) != 1 or tokens[0].kind != "ident":
        raise SourceParseError(f"not a function name: {_show(tokens)!r}")
    name = tokens[0].text
    if not re.search(rf"\b{re.escape(name)}\s*\(", sources.libbpf_c):
        raise SourceParseError(f"function {name!r} is not declared in libbpf.c")
    return name


def section_def_entry(
    index: int, args: Sequence[Sequence[Token]], sources: Sources
) -> dict[str, Any]:
    """One JSON entry from one ``SEC_DEF(...)`` argument list."""
    member_names = [m for m, _ in sources.members]
    values, _ = designated_initializer(sources.macro.expand(args), member_names)
    unknown = set(values) - set(SEC_DEF_MEMBER_TYPES)
    if unknown:
        raise SourceParseError(f"SEC_DEF entry {index} sets unexpected members {sorted(unknown)}")
    missing = {"sec", "prog_type", "expected_attach_type", "cookie"} - set(values)
    if missing:
        raise SourceParseError(f"SEC_DEF entry {index} leaves {sorted(missing)} unset")
    cookie = IntExpr(strip_casts(values["cookie"]), sources.flags.value_of)
    entry: dict[str, Any] = {
        "index": index,
        "sec": string_operand(values["sec"]),
        "prog_type": enum_operand(values["prog_type"], sources.prog_types),
        "expected_attach_type": enum_operand(values["expected_attach_type"], sources.attach_types),
        "flags": {"value": cookie.evaluate(), "names": cookie.names},
    }
    if entry["prog_type"]["name"] is None:
        raise SourceParseError(f"SEC_DEF entry {index}: prog_type is not an enumerator")
    for member in FN_MEMBERS:
        entry[member] = function_operand(values[member], sources) if member in values else None
    return entry


# --------------------------------------------------------------------------- whole table


def read_sources(tree: Path) -> Sources:
    """Tokenize and parse the declarations the table depends on."""
    libbpf_c = (tree / LIBBPF_C).read_text()
    bpf_h = (tree / BPF_H).read_text()
    libbpf_tokens = tokenize(libbpf_c)
    bpf_h_tokens = tokenize(bpf_h)
    members = parse_struct_members(libbpf_tokens, "bpf_sec_def")
    declared = dict(members)
    for member, c_type in SEC_DEF_MEMBER_TYPES.items():
        if declared.get(member) != c_type:
            raise SourceParseError(f"struct bpf_sec_def: {member} is {declared.get(member)!r}")
    return Sources(
        libbpf_c=libbpf_c,
        libbpf_tokens=libbpf_tokens,
        flags=parse_enum(libbpf_tokens, "sec_def_flags"),
        prog_types=parse_enum(bpf_h_tokens, "bpf_prog_type"),
        attach_types=parse_enum(bpf_h_tokens, "bpf_attach_type"),
        members=members,
        macro=parse_macro(libbpf_tokens, "SEC_DEF"),
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def check_tarball_matches(tree: Path, orig: Path) -> None:
    """The tarball's copies of the parsed files must equal the tree's."""
    with tarfile.open(orig) as tar:
        names = {name.split("/", 1)[-1]: name for name in tar.getnames() if "/" in name}
        for relative in (LIBBPF_C, BPF_H):
            member = names.get(relative)
            handle = tar.extractfile(member) if member else None
            if handle is None or handle.read() != (tree / relative).read_bytes():
                raise SourceParseError(f"{orig.name}: {relative} differs from {tree / relative}")


def build_table(version: str, tree: Path, orig: Path | None,
                debian_version: str | None = None) -> dict[str, Any]:
    """The JSON document for ``version`` from the unpacked ``tree``.

    ``debian_version`` is the Debian source version the tree came from, or
    None for any other tree (``oracle.tables.trees``).
    """
    sources = read_sources(tree)
    calls = section_def_calls(sources)
    if orig is not None:
        check_tarball_matches(tree, orig)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "generator": {"module": "oracle.tables.generate", "version": GENERATOR_VERSION},
        "libbpf_version": version,
        "debian_version": debian_version,
        "source": {
            "orig_tarball": f"libbpf_{version}.orig.tar.gz" if orig is not None
            or debian_version is not None else None,
            "orig_sha256": sha256_file(orig) if orig is not None else None,
            "files_sha256": {name: sha256_file(tree / name) for name in (LIBBPF_C, BPF_H)},
        },
        "bpf_sec_def_members": [name for name, _ in sources.members],
        "sec_def_positional_start": macro_positional_start(sources),
        "sec_def_flags": sources.flags.to_json(),
        "bpf_prog_type": sources.prog_types.to_json(),
        "bpf_attach_type": sources.attach_types.to_json(),
        "section_defs": [section_def_entry(i, args, sources) for i, args in enumerate(calls)],
    }


def dump(document: Any, indent: int = 0, width: int = 100) -> str:
    """Stable JSON: sorted keys, 2-space indent, containers that fit ``width`` on one line."""
    flat = json.dumps(document, sort_keys=True)
    if not isinstance(document, dict | list) or not document or indent + len(flat) <= width:
        return flat
    pad = " " * (indent + 2)
    if isinstance(document, dict):
        items = [
            f"{pad}{json.dumps(k)}: {dump(document[k], indent + 2, width)}"
            for k in sorted(document)
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + dump(v, indent + 2, width) for v in document]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


# --------------------------------------------------------------------------- command line


def locate(version: str, source: Path | None, orig: Path | None) -> tuple[Path, Path | None]:
    """The tree for ``version`` and its orig tarball (None when not found)."""
    from oracle.libbpf.debsrc import source_tree  # only the command line fetches sources

    if source is None:
        tree = source_tree(version)
    elif (source / LIBBPF_C).exists():
        tree = source
    elif (source / version / LIBBPF_C).exists():
        tree = source / version
    else:
        raise OracleError(f"{source} holds neither {LIBBPF_C} nor {version}/{LIBBPF_C}")
    if orig is None:
        beside = tree.parent / f"libbpf_{version}.orig.tar.gz"
        orig = beside if beside.exists() else None
    return tree, orig


def generate(version: str, source: Path | None, orig: Path | None, out: Path,
             upstream: str | None = None) -> Path:
    """Write ``out/libbpf-<version>.json``; returns its path.

    ``upstream``: the tree ``source`` is the upstream release ``version`` at this
    git commit (not one of Debian's sources); recorded as the table's provenance.
    """
    from oracle.libbpf.debsrc import check_release

    if upstream is not None:
        if source is None:
            raise OracleError("--upstream needs --source, the tree of that commit")
        tree, orig = locate(version, source, orig)
        document = build_table(version, tree, orig, None)
        document["source"]["upstream_commit"] = upstream
    else:
        debian_version = check_release(version)
        tree, orig = locate(version, source, orig)
        document = build_table(version, tree, orig, debian_version)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"libbpf-{version}.json"
    path.write_text(dump(document) + "\n")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; ``--orig`` and a single tree need exactly one ``--version``."""
    from oracle.libbpf.debsrc import RELEASES

    parser = argparse.ArgumentParser(
        prog="python -m oracle.tables.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--version",
        action="append",
        dest="versions",
        metavar="V",
        help=f"a release to generate (repeatable; default all: {', '.join(RELEASES)})",
    )
    parser.add_argument(
        "--source", type=Path, help="an unpacked tree, or a directory of <version>/ trees"
    )
    parser.add_argument("--orig", type=Path, help="the orig tarball of the single --version")
    parser.add_argument("--upstream", metavar="COMMIT", default=None,
                        help="--source is upstream libbpf's tree of the release --version at"
                        " this git commit (not a Debian source)")
    parser.add_argument(
        "--out", type=Path, default=DATA_DIR, help="output directory (default: package data)"
    )
    args = parser.parse_args(argv)
    args.versions = args.versions or list(RELEASES)
    single_tree = args.source is not None and (args.source / LIBBPF_C).exists()
    if (args.orig is not None or single_tree) and len(args.versions) != 1:
        parser.error("--orig and a single-tree --source need exactly one --version")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the requested tables; an ``OracleError`` is one line and exit 2."""
    args = parse_args(argv)
    try:
        for version in args.versions:
            path = generate(version, args.source, args.orig, args.out, args.upstream)
            print(f"wrote {path}")
    except OracleError as exc:
        sys.stderr.write(f"generate: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
