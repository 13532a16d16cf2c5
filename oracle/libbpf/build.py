"""Cached builds of libbpf's shared object from Debian's release sources.

Layout (``<cache>`` is ``debsrc.cache_dir()``, i.e. ``$SEC_ORACLE_CACHE`` when set):
  ``<cache>/build/<version>-<variant>/``
      ``libbpf.so.<version>``  the shared object make produced
      ``libbpf.so.1``          symlink to it: the path callers load
      ``libbpf.so``            symlink to ``libbpf.so.1``
      ``build.json``           version, variant, cc, flags, sha256, seconds
      ``build.log``            make's full output
  ``<cache>/build/<version>-<variant>.failed.log``  output of the last failed build
  ``<cache>/build/.<version>-<variant>.lock``       the build lock
  ``<cache>/build/tree-<hash16>-<variant>/``  a build of a user's source tree
      (``build_tree``): the same files; ``build.json`` adds the tree's path,
      ``source_sha256`` (``trees.source_hash`` of what was compiled) and
      ``release`` (the version ``src/libbpf.map`` names)
Other builds of a (patched) release tree, e.g. ``mutants``, publish through
``publish()`` under a name of their own with the same rules.

Variants (``VARIANTS``), all compiled with clang so they differ only in
instrumentation:
  ``plain``  libbpf's own default flags, minus ``-Werror``.
  ``asan``   AddressSanitizer + UBSan, no recovery, frame pointers, ``-O1``.
  ``fuzz``   ``asan`` plus ``-fsanitize=fuzzer-no-link`` (SanitizerCoverage
             counters and comparison hooks that libFuzzer, i.e. atheris, reads).
  ``cov``    source-based coverage (``-fprofile-instr-generate
             -fcoverage-mapping``, ``-O0``, no sanitizer); the loading process
             writes ``$LLVM_PROFILE_FILE`` at exit (``oracle.coverage``).

Rules:
- ``build()`` is idempotent: a published directory is never rebuilt or
  modified, unless it is damaged or the caller forces it.
- A published build is used only if its .so still hashes to ``build.json``'s
  ``sha256`` (``damage``; ~1 ms for a plain .so, ~8 ms for asan/fuzz, warm):
  a damaged one (truncated, edited) is rebuilt where building is allowed
  (``build``, ``build_tree``, ``mutants.build_mutant``), else refused in one
  line naming ``sec-oracle libbpf build --force TARGET``.  ``force=True``
  rebuilds a published build whatever its state.
- A directory is published only complete: make runs in a private staging
  directory under ``<cache>/build``, which is renamed into place atomically.
  A build directory therefore exists completely or not at all.
- A tree build compiles a private snapshot of the tree's inputs
  (``trees.snapshot``) and is named by the snapshot's hash, so an edit while
  it builds never yields a build named for the other state.  An unchanged
  tree reuses its build; a one-line edit makes a new one.
- Builds of one target are serialised by an exclusive file lock; the second
  caller waits, then finds the published result.  Different targets build in
  parallel; they only read the shared source tree (objects go to ``OBJDIR``).
- Sanitizer builds do not link the sanitizer runtime (clang never does for
  ``-shared``): the process that loads them must preload it, see
  ``targets.Target.env``.
- ``-Werror`` is dropped: a new compiler's new warning must not stop the
  oracle; warnings stay visible in ``build.log``.
- The build environment is scrubbed of ``CC``/``CFLAGS``/``LDFLAGS``/
  ``EXTRA_*``/``LD_PRELOAD`` so a build depends only on the variant.
- Every failure is a one-line ``LibbpfError`` saying how to fix it; a failed
  make keeps its log in the cache and names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, get_args

from oracle import cache
from oracle import sourcetree as trees
from oracle.errors import LibbpfError
from oracle.libbpf import debsrc

Variant = Literal["plain", "asan", "fuzz", "cov"]
TREE_PREFIX: Final = "tree-"
VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)

CC: Final = "clang"
_WARN: Final = "-Wall -std=gnu89"
_SANITIZE: Final = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
_FUZZ: Final = "-fsanitize=fuzzer-no-link"
_COV: Final = "-fprofile-instr-generate -fcoverage-mapping"
_SCRUBBED_ENV: Final = (
    "CC",
    "CFLAGS",
    "LDFLAGS",
    "EXTRA_CFLAGS",
    "EXTRA_LDFLAGS",
    "CROSS_COMPILE",
    "MAKEFLAGS",
    "LD_PRELOAD",
)
_APT_HINT: Final = "apt-get install clang libclang-rt-14-dev make libelf-dev zlib1g-dev pkg-config"
_MAKE_TIMEOUT_S: Final = 1800
_TOOL_ERROR: Final = re.compile(r"\b(fatal )?error:|undefined reference|cannot find -l")


@dataclass(frozen=True)
class Flags:
    """What the compiler is told for one variant."""

    cflags: str
    ldflags: str


def flags(variant: Variant) -> Flags:
    """The CFLAGS/LDFLAGS passed to libbpf's ``src/Makefile`` for ``variant``."""
    if variant == "plain":
        return Flags(f"-g -O2 {_WARN}", "")
    if variant == "cov":
        return Flags(f"-g -O0 {_WARN} {_COV}", "-fprofile-instr-generate")
    sanitize = _SANITIZE if variant == "asan" else f"{_SANITIZE} {_FUZZ}"
    ldflags = "-fsanitize=address,undefined" + (f" {_FUZZ}" if variant == "fuzz" else "")
    return Flags(f"-g -O1 {_WARN} {sanitize}", ldflags)


def spec(version: str, variant: Variant) -> str:
    """The target spelling: ``1.7.0`` for plain, ``1.7.0+asan`` otherwise."""
    return version if variant == "plain" else f"{version}+{variant}"


def check_variant(variant: str) -> Variant:
    """``variant`` typed, or a one-line error."""
    for known in VARIANTS:
        if variant == known:
            return known
    raise LibbpfError(f"unknown build variant {variant!r}: use one of {', '.join(VARIANTS)}")


def build_root() -> Path:
    """``<cache>/build``."""
    return debsrc.cache_dir() / "build"


def build_dir(version: str, variant: Variant) -> Path:
    """Where the build of ``version``/``variant`` is (or would be) published."""
    return build_root() / f"{version}-{variant}"


def built(version: str, variant: Variant) -> Path | None:
    """The loadable ``libbpf.so.1`` of a published build, or None if not built."""
    return published_so(build_dir(version, variant))


def published_so(directory: Path) -> Path | None:
    """The loadable ``libbpf.so.1`` of the build published at ``directory``, or None."""
    so = directory / "libbpf.so.1"
    return so if so.exists() and (directory / "build.json").is_file() else None


def damage(directory: Path) -> str | None:
    """Why the build published at ``directory`` cannot be trusted, or None (module rules)."""
    try:
        info = build_info(directory)
        so = directory / info["so"]
        with open(so, "rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        expected = info["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its build record cannot be checked ({getattr(exc, 'strerror', None) or exc!r})"
    if actual != expected:
        return (f"{so.name} does not match the sha256 in build.json (truncated or changed"
                " since it was built)")
    return None


def intact_so(directory: Path) -> Path | None:
    """``published_so(directory)`` if that build is undamaged (``damage``), else None."""
    so = published_so(directory)
    return so if so is not None and damage(directory) is None else None


def check_intact(directory: Path, spec: str) -> None:
    """A one-line ``LibbpfError`` naming the rebuild command if the build is damaged."""
    problem = damage(directory)
    if problem is not None:
        raise LibbpfError(f"the cached build of libbpf {spec} at {directory} is damaged:"
                          f" {problem}; rebuild it: sec-oracle libbpf build --force {spec}")


def build_info(directory: Path) -> dict[str, Any]:
    """The ``build.json`` of a published build directory."""
    info: dict[str, Any] = json.loads((directory / "build.json").read_text())
    return info


def published() -> list[tuple[str, Variant, Path]]:
    """(version, variant, libbpf.so.1) of every complete build, oldest release first."""
    found: list[tuple[str, Variant, Path]] = []
    root = build_root()
    if not root.is_dir():
        return found
    for directory in root.iterdir():
        version, _, variant = directory.name.rpartition("-")
        if directory.name.startswith((".", TREE_PREFIX)) or variant not in VARIANTS:
            continue
        so = built(version, check_variant(variant))
        if so is not None:
            found.append((version, check_variant(variant), so))
    return sorted(found, key=lambda row: (_version_key(row[0]), VARIANTS.index(row[1])))


@dataclass(frozen=True)
class TreeBuild:
    """A published build of a source tree (``build_tree``)."""

    tree: Path  # the tree it was built from, as given then
    source_sha256: str
    release: str
    variant: Variant
    so: Path


def tree_build_dir(source_sha256: str, variant: Variant) -> Path:
    """Where the build of the tree state ``source_sha256`` as ``variant`` is published."""
    return build_root() / f"{TREE_PREFIX}{source_sha256[:16]}-{variant}"


def published_trees() -> list[TreeBuild]:
    """Every complete tree build in the cache, by tree path then variant."""
    found = []
    root = build_root()
    for directory in sorted(root.glob(f"{TREE_PREFIX}*")) if root.is_dir() else []:
        so = published_so(directory)
        if so is None:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = build_info(directory)
            found.append(TreeBuild(Path(info["tree"]), info["source_sha256"], info["release"],
                                   check_variant(info["variant"]), so))
    return sorted(found, key=lambda b: (str(b.tree), VARIANTS.index(b.variant)))


def build_tree(tree: Path, variant: Variant = "plain", *, force: bool = False) -> TreeBuild:
    """The build of the libbpf source tree ``tree`` as ``variant``, building it if needed
    (or damaged, or ``force``).

    Cached by the content of what the build reads (module rules); two runs
    building the same state serialise on its lock and share one build.
    """
    check_variant(variant)
    release = trees.release_of(tree)
    label = f"{tree}" + ("" if variant == "plain" else f"+{variant}")
    directory = tree_build_dir(trees.source_hash(tree), variant)
    if force or intact_so(directory) is None:
        root = cache.make_dir(build_root())
        with tempfile.TemporaryDirectory(dir=root, prefix=".snapshot-") as tmp:
            copy = Path(tmp) / "tree"
            sha = trees.snapshot(tree, copy)
            directory = tree_build_dir(sha, variant)
            with debsrc.locked(root / f".{directory.name}.lock"):
                if force or intact_so(directory) is None:
                    preflight()
                    publish(copy, release, variant, directory.name, label,
                            {"kind": "tree", "tree": str(tree), "source_sha256": sha,
                             "release": release})
    so = published_so(directory)
    if so is None:  # pragma: no cover - publish either renames or raises
        raise LibbpfError(f"build of libbpf tree {label} vanished from {directory}")
    info = build_info(directory)
    return TreeBuild(tree, info["source_sha256"], info["release"], variant, so)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def build(version: str, variant: Variant = "plain", *, force: bool = False) -> Path:
    """The ``libbpf.so.1`` of ``version`` built as ``variant``, building it on first use
    (and when damaged, or ``force``)."""
    debsrc.check_release(version)
    check_variant(variant)
    directory = build_dir(version, variant)
    done = None if force else intact_so(directory)
    if done is not None:
        return done
    root = build_root()
    with debsrc.locked(root / f".{version}-{variant}.lock"):
        done = None if force else intact_so(directory)
        if done is not None:
            return done
        preflight()
        source = debsrc.source_tree(version)
        publish(source, version, variant, f"{version}-{variant}", spec(version, variant))
    done = built(version, variant)
    if done is None:  # pragma: no cover - publish either renames or raises
        raise LibbpfError(f"build of libbpf {spec(version, variant)} vanished from {root}")
    return done


def preflight() -> None:
    """Fail early, naming the apt packages, when a build tool or header is missing."""
    for tool in (CC, "make"):
        if shutil.which(tool) is None:
            raise LibbpfError(f"{tool} not found, needed to build libbpf: {_APT_HINT}")
    probe = subprocess.run(
        [CC, "-E", "-x", "c", "-", "-o", os.devnull],
        input="#include <gelf.h>\n#include <zlib.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise LibbpfError(
            f"libelf/zlib headers not found ({_last_error(probe.stderr)}): "
            "apt-get install libelf-dev zlib1g-dev pkg-config"
        )


def publish(source: Path, version: str, variant: Variant, name: str, label: str,
            extra_info: dict[str, Any] | None = None) -> None:
    """Build the tree ``source`` of release ``version`` as ``variant``; publish ``<root>/name``.

    The caller holds the lock of ``name`` and has checked it is not published
    yet.  ``label`` names the build in errors; ``extra_info`` is added to
    ``build.json``.  A failure keeps make's output in ``<root>/<name>.failed.log``.
    """
    root = cache.make_dir(build_root())
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
    try:
        seconds = _make(source, staging, name, label, variant)
        _collect(staging, version, name, label)
        _write_info(staging, version, variant, seconds, extra_info or {})
        final = root / name
        if final.exists():  # incomplete leftovers: built() said no
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make(source: Path, staging: Path, name: str, label: str, variant: Variant) -> float:
    """Run make into ``staging/obj``, logging to ``staging/build.log``; the seconds taken."""
    chosen = flags(variant)
    obj = staging / "obj"
    argv = [
        "make",
        "-C",
        str(source / "src"),
        f"-j{os.cpu_count() or 1}",
        "V=1",
        f"OBJDIR={obj}",
        f"CC={CC}",
        f"CFLAGS={chosen.cflags}",
        f"LDFLAGS={chosen.ldflags}",
        f"{obj}/libbpf.so",
    ]
    log = staging / "build.log"
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    started = time.monotonic()
    with open(log, "w") as out:
        out.write(shlex.join(argv) + "\n")
        out.flush()
        try:
            result = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=_MAKE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            result = None
    if result is None or result.returncode != 0:
        _fail(log, name, label)
    return time.monotonic() - started


def _fail(log: Path, name: str, label: str, reason: str | None = None) -> NoReturn:
    kept = build_root() / f"{name}.failed.log"
    os.replace(log, kept)
    why = reason or _last_error(kept.read_text(errors="replace"))
    raise LibbpfError(f"building libbpf {label} failed: {why}; full log: {kept}")


def _last_error(output: str) -> str:
    """The last compiler/linker error, else make's last error, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    tool = [ln for ln in lines if _TOOL_ERROR.search(ln) and not ln.startswith("make")]
    make = [ln for ln in lines if re.search(r"error|no rule", ln, re.IGNORECASE)]
    return (tool or make or lines or ["no output"])[-1]


def _collect(staging: Path, version: str, name: str, label: str) -> None:
    """Move the .so and its two symlinks out of ``obj`` into ``staging``; drop ``obj``."""
    obj = staging / "obj"
    real = obj / f"libbpf.so.{version}"
    if not real.is_file():
        _fail(staging / "build.log", name, label, f"make produced no {real.name}")
    os.replace(real, staging / real.name)
    (staging / "libbpf.so.1").symlink_to(real.name)
    (staging / "libbpf.so").symlink_to("libbpf.so.1")
    shutil.rmtree(obj)


def _write_info(staging: Path, version: str, variant: Variant, seconds: float,
                extra_info: dict[str, Any]) -> None:
    chosen = flags(variant)
    so = staging / f"libbpf.so.{version}"
    info = {
        "version": version,
        "debian_version": debsrc.RELEASES.get(version),
        "variant": variant,
        "cc": CC,
        "cc_version": _cc_version(),
        "cflags": chosen.cflags,
        "ldflags": chosen.ldflags,
        "so": so.name,
        "sha256": hashlib.sha256(so.read_bytes()).hexdigest(),
        "build_seconds": round(seconds, 1),
        **extra_info,
    }
    (staging / "build.json").write_text(json.dumps(info, indent=2) + "\n")


def _cc_version() -> str:
    result = subprocess.run([CC, "--version"], capture_output=True, text=True, check=False)
    return (result.stdout.splitlines() or ["unknown"])[0]
