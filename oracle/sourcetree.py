"""A libbpf source tree: what makes one, what its build reads, its content hash, its release.

Rules:
- A tree is a directory holding ``src/libbpf.c``: a git checkout of libbpf or
  an unpacked release.  Anything else given as a tree is a one-line
  ``LibbpfError`` naming what is missing.
- What a build reads (``is_input``): under ``src/`` the files named ``*.c``,
  ``*.h``, ``Makefile`` and ``*.map``, and every regular file under
  ``include/``.  Build outputs left in the tree (objects, ``.so``, ``.a``,
  ``.pc``) and everything else (docs, scripts, ``.git``) are not inputs.
- ``source_hash``: sha256 over the sorted (relative path, sha256 of content)
  of the inputs.  Edit one line of one input and the hash changes; touch a
  file without changing it, or add a file the build does not read, and it
  does not.  Builds and generated tables are cached under it.
- ``snapshot`` copies the inputs into a private directory and returns that
  copy's hash, so a build never mixes two states of a tree being edited: the
  cache entry is named by what was actually compiled.
- The release is what libbpf's Makefile names the ``.so``
  (``libbpf.so.X.Y.Z``): its ``LIBBPF_MAJOR_VERSION``, ``_MINOR_`` and
  ``_PATCH_VERSION`` (the Makefile checks major.minor against the highest
  ``LIBBPF_X.Y.0`` node of ``src/libbpf.map``; that node is the fallback for a
  Makefile without them).  ``libbpf_register_prog_handler`` exists from 0.8.0 on;
  a tree of an older release is refused.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Final

from oracle.errors import LibbpfError

#: the first release with libbpf_register_prog_handler (LIBBPF_0.8.0 in libbpf.map)
FIRST_RELEASE: Final = (0, 8, 0)
_SRC_INPUT: Final = re.compile(r"[^/]+\.(c|h|map)|Makefile")
_MAP_NODE: Final = re.compile(r"^LIBBPF_(\d+)\.(\d+)\.(\d+)\s*\{", re.MULTILINE)


def is_tree(path: Path) -> bool:
    """``path`` is a directory that holds ``src/libbpf.c``."""
    return (path / "src" / "libbpf.c").is_file()


def check_tree(path: Path, spec: str) -> Path:
    """``path`` as an absolute libbpf tree, or a one-line error."""
    if not path.is_dir():
        raise LibbpfError(f"libbpf target {spec!r}: {path} is not a directory")
    if not is_tree(path):
        raise LibbpfError(
            f"libbpf target {spec!r}: {path} is not a libbpf source tree (no src/libbpf.c); "
            "give the top of a libbpf checkout or unpacked release"
        )
    release_of(path)  # a tree of a release without this API is refused here
    return path.absolute()


def is_input(relative: str) -> bool:
    """A tree-relative path the build reads (see the module rules)."""
    top, _, rest = relative.partition("/")
    if top == "include":
        return bool(rest)
    return top == "src" and _SRC_INPUT.fullmatch(rest) is not None


def inputs(tree: Path) -> list[str]:
    """The tree-relative paths of the build's inputs, sorted."""
    found = []
    for top in ("src", "include"):
        base = tree / top
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            relative = path.relative_to(tree).as_posix()
            if path.is_file() and is_input(relative):
                found.append(relative)
    return sorted(found)


def source_hash(tree: Path) -> str:
    """sha256 of the build's inputs, by path and content (see the module rules)."""
    digest = hashlib.sha256()
    for relative in inputs(tree):
        content = hashlib.sha256((tree / relative).read_bytes()).hexdigest()
        digest.update(f"{relative}\0{content}\n".encode())
    return digest.hexdigest()


def snapshot(tree: Path, into: Path) -> str:
    """Copy the inputs of ``tree`` under ``into`` (a new tree); the copy's hash."""
    for relative in inputs(tree):
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / relative, target)
    return source_hash(into)


def release_of(tree: Path) -> str:
    """The release the tree builds (module rules)."""
    release = _makefile_release(tree) or _map_release(tree)
    if release < FIRST_RELEASE:
        text = ".".join(map(str, release))
        raise LibbpfError(
            f"{tree} is libbpf {text}: libbpf_register_prog_handler exists from 0.8.0 on"
        )
    return ".".join(map(str, release))


def _makefile_release(tree: Path) -> tuple[int, ...] | None:
    try:
        text = (tree / "src" / "Makefile").read_text(errors="replace")
    except OSError:
        return None
    parts = [re.search(rf"^LIBBPF_{part}_VERSION\s*:?=\s*(\d+)\s*$", text, re.MULTILINE)
             for part in ("MAJOR", "MINOR", "PATCH")]
    return tuple(int(m[1]) for m in parts if m) if all(parts) else None


def _map_release(tree: Path) -> tuple[int, ...]:
    version_map = tree / "src" / "libbpf.map"
    try:
        text = version_map.read_text(errors="replace")
    except OSError as exc:
        raise LibbpfError(f"{tree} is not a buildable libbpf tree: cannot read "
                          f"src/libbpf.map ({exc.strerror})") from None
    nodes = [tuple(int(part) for part in m.groups()) for m in _MAP_NODE.finditer(text)]
    if not nodes:
        raise LibbpfError(f"{version_map} names no LIBBPF_X.Y.Z version node")
    return max(nodes)
