"""``--libbpf TARGET``: which libbpf shared object a command loads, and how.

Syntax (``parse_target``):
  ``system``        the distribution's ``libbpf.so.1`` (ldconfig's cache, then
                    the multiarch directories)
  ``VERSION``       a release of ``debsrc.RELEASES``, built on first use
  ``VERSION+asan``  the same built with ASan + UBSan
  ``VERSION+fuzz``  ``+asan`` plus SanitizerCoverage for atheris/libFuzzer
  ``DIR``           a libbpf source tree (``trees``: has ``src/libbpf.c``),
                    built into the cache keyed by its content
  ``VERSION+cov``   source-based coverage (``build``), no sanitizer
  ``DIR+asan``, ``DIR+fuzz``, ``DIR+cov``  the same tree with the release variants
  ``PATH``          any libbpf ``.so``: contains ``/``, starts with ``~`` or
                    ``.``, or contains ``.so``
A spelling that looks like a path (``/``, ``~``, ``.``, ``.so``) is a tree when
it names a directory (after an optional ``+asan``/``+fuzz``/``+cov``), else a file.

Rules:
- ``parse_target`` does no I/O besides checking that a PATH exists; every
  malformed spec, unknown release or missing file is a one-line ``LibbpfError``.
- A PATH's variant is read from its dynamic symbols (``detect_variant``):
  references to ``__sanitizer_cov_*`` mean ``fuzz``, to ``__asan_*`` or
  ``__ubsan_handle_*`` mean ``asan``; a ``__llvm_prf_cnts`` section means ``cov``;
  anything else is ``plain``.
- A ``+cov`` build's process gets ``LLVM_PROFILE_FILE`` (``profile_file``):
  ``%m``, merge mode under the runtime's lock, because the runtime expands
  ``%p`` once at load, so forked copies would overwrite each other's file.
- A sanitizer build never links its runtime, so a process loading it needs
  ``Target.env()``: ``LD_PRELOAD`` of clang's ASan runtime (host ``python``) or
  atheris's ``asan_with_fuzzer.so`` (host ``atheris``), plus ASAN/UBSAN options.
  That environment must be in place when the process starts; the caller's own
  ``LD_PRELOAD`` is replaced, because the runtime must come first.
- ``probe`` loads the library only in a child process, so a crash, a sanitizer
  report or a wrong library never takes the caller down.  Exception: a
  PyInstaller-packaged harness (``sys.frozen``) has no Python to start a child
  with; it probes in process (it loads the library in process next anyway).
- A library counts as libbpf only if it exports ``libbpf_version_string``,
  ``libbpf_major_version``, ``libbpf_minor_version`` and
  ``libbpf_register_prog_handler``.

Table selection (``select_table``): libbpf reports only ``v<major>.<minor>``.
The full release is known for a release target (the requested version), for
``system`` from dpkg, and for any library whose real file name is
``libbpf.so.X.Y.Z`` (what libbpf's Makefile produces).  The table is that
release's if the oracle has it, else the newest known table with the same
major.minor, else none (``require_table`` then names the nearest).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from oracle import sourcetree as trees
from oracle.errors import LibbpfError, UnknownVersionError
from oracle.libbpf import build as builder
from oracle.libbpf import debsrc
from oracle.libbpf.build import VARIANTS, Variant

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

Kind = Literal["system", "release", "path", "tree"]
Host = Literal["python", "atheris"]

SYNTAX: Final = ("use system, VERSION[+asan|+fuzz|+cov], DIR[+asan|+fuzz|+cov] "
                 "(a libbpf source tree) "
                 "or a path to a libbpf .so")
ASAN_OPTIONS: Final = (
    # Python never frees everything at exit: leak reports would be noise.
    "detect_leaks=0",
    # Stop at the first report, with an exit status rather than a core dump.
    "halt_on_error=1",
    "abort_on_error=0",
    "handle_abort=1",
    # Report wild accesses ourselves; let Python's faulthandler coexist.
    "handle_segv=1",
    "allow_user_segv_handler=1",
    # Short allocation stacks: enough to find libbpf's frame, cheap for Python.
    "malloc_context_size=10",
)
UBSAN_OPTIONS: Final = ("halt_on_error=1", "print_stacktrace=1")
EXPORTS: Final = (
    "libbpf_version_string",
    "libbpf_major_version",
    "libbpf_minor_version",
    "libbpf_register_prog_handler",
)
_PROBE_TIMEOUT_S: Final = 120

#: what the probe calls
_PROBE_CDEF: Final = """
const char *libbpf_version_string(void);
unsigned int libbpf_major_version(void);
unsigned int libbpf_minor_version(void);
int libbpf_register_prog_handler(const char *sec, int prog_type, int exp_attach_type,
                                 const void *opts);
"""

# Runs in the child: prints one JSON line, never a traceback for expected failures.
_PROBE_SCRIPT: Final = """
import json, sys
import cffi
ffi = cffi.FFI()
ffi.cdef('''
@CDEF@''')
try:
    lib = ffi.dlopen(sys.argv[1])
except OSError as exc:
    print(json.dumps({"error": "load", "detail": str(exc).split(".  Additionally")[0]}))
    raise SystemExit(0)
missing = []
for name in sys.argv[2:]:
    try:
        getattr(lib, name)
    except AttributeError:
        missing.append(name)
if missing:
    print(json.dumps({"error": "missing", "missing": missing}))
    raise SystemExit(0)
print(json.dumps({
    "version_string": ffi.string(lib.libbpf_version_string()).decode(),
    "major": lib.libbpf_major_version(),
    "minor": lib.libbpf_minor_version(),
}))
""".replace("@CDEF@", _PROBE_CDEF)


@dataclass(frozen=True)
class Target:
    """A resolved ``--libbpf`` target: the .so to load and how to load it."""

    spec: str  # as given
    kind: Kind
    version: str | None  # the release: requested (release) or what the tree's map names (tree)
    variant: Variant
    path: Path  # the .so to load
    tree: Path | None = None  # the source tree (kind == "tree")
    source_sha256: str | None = None  # trees.source_hash of the tree as built

    def env(self, host: Host = "python") -> dict[str, str]:
        """Extra environment for a process that loads this .so; empty for plain."""
        if self.variant == "plain":
            return {}
        if self.variant == "cov":
            return {"LLVM_PROFILE_FILE": profile_file()}
        runtime = atheris_runtime() if host == "atheris" else asan_runtime()
        return {
            "LD_PRELOAD": str(runtime),
            "ASAN_OPTIONS": _options(ASAN_OPTIONS),
            "UBSAN_OPTIONS": _options(UBSAN_OPTIONS),
        }


@dataclass(frozen=True)
class LibbpfInfo:
    """What a loaded libbpf reports, and the oracle table it selects."""

    version_string: str  # libbpf_version_string(), e.g. "v1.7"
    major: int
    minor: int
    table_version: str | None  # a known table version, or None
    release: str | None = None  # full upstream release when known, e.g. "1.7.0"


# -- parsing -------------------------------------------------------------------

_RELEASE: Final = re.compile(r"(?P<version>\d[\w.]*)(?:\+(?P<variant>\w*))?")


def parse_target(spec: str) -> tuple[Kind, str | None, Variant, Path | None]:
    """(kind, version, variant, path) of ``spec``; a PATH's variant is "plain" here.

    ``resolve`` reads a PATH's real variant from the ELF file.
    """
    text = spec.strip()
    if text == "system":
        return "system", None, "plain", None
    if not text:
        raise LibbpfError(f"empty libbpf target: {SYNTAX}")
    if text.startswith("system+"):
        raise LibbpfError(f"{spec!r}: the system libbpf comes as built; use e.g. 1.7.0+asan")
    if _looks_like_path(text):
        stem, plus, suffix = text.rpartition("+")
        if plus and suffix in VARIANTS and Path(stem).expanduser().is_dir():
            tree = trees.check_tree(Path(stem).expanduser(), spec)
            return "tree", trees.release_of(tree), _release_variant(suffix, spec), tree
        if Path(text).expanduser().is_dir():
            tree = trees.check_tree(Path(text).expanduser(), spec)
            return "tree", trees.release_of(tree), "plain", tree
        return "path", None, "plain", _existing_file(text, spec)
    match = _RELEASE.fullmatch(text)
    if match is None:
        raise LibbpfError(f"bad libbpf target {spec!r}: {SYNTAX}")
    version = match["version"]
    debsrc.check_release(version)
    return "release", version, _release_variant(match["variant"], spec), None


def _looks_like_path(text: str) -> bool:
    return "/" in text or text.startswith(("~", ".")) or ".so" in text


def _existing_file(text: str, spec: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise LibbpfError(f"libbpf target {spec!r}: no such file {path}")
    if not path.is_file():
        raise LibbpfError(f"libbpf target {spec!r}: {path} is not a file")
    return path.absolute()


def _release_variant(suffix: str | None, spec: str) -> Variant:
    if suffix is None:
        return "plain"
    if suffix == "asan":
        return "asan"
    if suffix == "fuzz":
        return "fuzz"
    if suffix == "cov":
        return "cov"
    raise LibbpfError(
        f"unknown variant +{suffix} in {spec!r}: use VERSION, VERSION+asan, VERSION+fuzz "
        "or VERSION+cov"
    )


# -- resolving -----------------------------------------------------------------


def resolve(spec: str, *, build: bool = True, force: bool = False) -> Target:
    """The target ``spec`` names; a release or tree is built on first use unless ``build=False``
    (a damaged cached build is rebuilt, or refused if ``build=False``; ``force``
    rebuilds it anyway; both: ``build``'s module rules)."""
    kind, version, variant, path = parse_target(spec)
    if kind == "system":
        return Target(spec, kind, None, "plain", system_libbpf())
    if kind == "tree":
        assert path is not None
        done = _tree_build(path, variant, spec, build=build, force=force)
        return Target(spec, kind, done.release, variant, done.so, path, done.source_sha256)
    if kind == "path":
        assert path is not None
        return Target(spec, kind, None, detect_variant(path), path)
    assert version is not None
    return Target(spec, kind, version, variant,
                  _release_so(version, variant, build=build, force=force))


def _release_so(version: str, variant: Variant, *, build: bool, force: bool = False) -> Path:
    if build:
        return builder.build(version, variant, force=force)
    done = builder.built(version, variant)
    name = builder.spec(version, variant)
    if done is None:
        raise LibbpfError(f"libbpf {name} is not built yet: run sec-oracle libbpf build {name}")
    builder.check_intact(done.parent, name)
    return done


def _tree_build(tree: Path, variant: Variant, spec: str, *, build: bool,
                force: bool = False) -> builder.TreeBuild:
    if build:
        return builder.build_tree(tree, variant, force=force)
    sha = trees.source_hash(tree)
    directory = builder.tree_build_dir(sha, variant)
    so = builder.published_so(directory)
    if so is None:
        raise LibbpfError(f"libbpf tree {spec} is not built in this state yet: "
                          f"run sec-oracle libbpf build {spec}")
    builder.check_intact(directory, spec)
    return builder.TreeBuild(tree, sha, trees.release_of(tree), variant, so)


def system_libbpf() -> Path:
    """The distribution's ``libbpf.so.1``, directory symlinks resolved (for dpkg)."""
    for candidate in [*_ldconfig_candidates(), *_multiarch_candidates()]:
        if candidate.is_file():
            return Path(os.path.realpath(candidate.parent)) / candidate.name
    raise LibbpfError(
        "no system libbpf.so.1 found: apt-get install libbpf1, or use a release such as 1.7.0"
    )


def _ldconfig_candidates() -> list[Path]:
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        return []
    result = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False)
    wanted = "x86-64" if platform.machine() == "x86_64" else platform.machine()
    found = []
    for line in result.stdout.splitlines():
        name, _, rest = line.strip().partition(" ")
        if name == "libbpf.so.1" and "=>" in rest and wanted in rest.split("=>")[0]:
            found.append(Path(rest.split("=>")[1].strip()))
    return found


def _multiarch_candidates() -> list[Path]:
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    dirs = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}", "/usr/lib64", "/usr/lib"]
    return [Path(d) / "libbpf.so.1" for d in dirs]


def detect_variant(path: Path) -> Variant:
    """How ``path`` is instrumented, from the symbols its dynamic table names."""
    names = _dynamic_symbols(path)
    if any(name.startswith("__sanitizer_cov_") for name in names):
        return "fuzz"
    if any(name.startswith(("__asan_", "__ubsan_handle_")) for name in names):
        return "asan"
    if _has_section(path, "__llvm_prf_cnts"):
        return "cov"
    return "plain"


def _has_section(path: Path, name: str) -> bool:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as handle:
        return ELFFile(handle).get_section_by_name(name) is not None


def _dynamic_symbols(path: Path) -> set[str]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    try:
        with open(path, "rb") as handle:
            elf = ELFFile(handle)
            table = elf.get_section_by_name(".dynsym")
            needed = _needed(elf)
            symbols = table.iter_symbols() if isinstance(table, SymbolTableSection) else []
            names = {symbol.name for symbol in symbols}
    except (ELFError, OSError) as exc:
        raise LibbpfError(
            f"{path} is not a libbpf: not a readable ELF shared object ({exc})"
        ) from None
    if any(lib.startswith("libasan.so") for lib in needed):
        raise LibbpfError(
            f"{path} was built with gcc's AddressSanitizer (needs libasan); "
            "rebuild it with clang, whose runtime this tool preloads"
        )
    return names


def _needed(elf: ELFFile) -> list[str]:
    from elftools.elf.dynamic import DynamicSection

    dynamic = elf.get_section_by_name(".dynamic")
    if not isinstance(dynamic, DynamicSection):
        return []
    # pyelftools sets ``needed`` on DT_NEEDED tags only, outside its type hints.
    return [str(tag.needed) for tag in dynamic.iter_tags("DT_NEEDED")]  # type: ignore[attr-defined]


# -- sanitizer runtimes ----------------------------------------------------------


@functools.cache
def asan_runtime() -> Path:
    """clang's shared ASan runtime (it also carries UBSan's handlers)."""
    name = f"libclang_rt.asan-{platform.machine()}.so"
    if shutil.which("clang") is not None:
        result = subprocess.run(
            ["clang", f"-print-file-name={name}"], capture_output=True, text=True, check=False
        )
        printed = Path(result.stdout.strip())
        if printed.is_absolute() and printed.is_file():
            return printed
    found = sorted(Path("/usr/lib").glob(f"llvm-*/lib/clang/*/lib/linux/{name}"))
    if found:
        return found[-1]
    raise LibbpfError(
        f"clang's ASan runtime {name} not found: apt-get install clang libclang-rt-14-dev"
    )


@functools.cache
def atheris_runtime() -> Path:
    """atheris's ``asan_with_fuzzer.so`` (ASan plus the libFuzzer it drives)."""
    found = importlib.util.find_spec("atheris")
    if found is None or found.origin is None:
        raise LibbpfError("atheris is not installed: pip install -e '.[fuzz]'")
    package = Path(found.origin).parent
    for directory in (package.parent, package):
        if (directory / "asan_with_fuzzer.so").is_file():
            return directory / "asan_with_fuzzer.so"
    raise LibbpfError(f"atheris at {package} ships no asan_with_fuzzer.so: reinstall atheris")


@functools.cache
def symbolizer() -> Path | None:
    """llvm-symbolizer, for symbolized sanitizer stacks; None if not installed."""
    for name in ("llvm-symbolizer", "llvm-symbolizer-14"):
        found = shutil.which(name)
        if found:
            return Path(found)
    candidates = sorted(Path("/usr/lib").glob("llvm-*/bin/llvm-symbolizer"))
    return candidates[-1] if candidates else None


def profile_file() -> str:
    """Where a process loading a ``+cov`` build writes its profile (``%m``: merged, locked).

    The caller's ``$LLVM_PROFILE_FILE`` when set (``oracle.coverage`` sets a
    run directory), else one under the temporary directory.
    """
    given = os.environ.get("LLVM_PROFILE_FILE")
    if given:
        return given
    return str(Path(tempfile.gettempdir()) / "sec-oracle-cov" / "libbpf-%m.profraw")


def _options(base: tuple[str, ...]) -> str:
    tool = symbolizer()
    extra = ("symbolize=1", f"external_symbolizer_path={tool}") if tool else ("symbolize=0",)
    return ":".join((*base, *extra))


# -- probing -------------------------------------------------------------------


def probe(target: Target) -> LibbpfInfo:
    """Load ``target`` in a child process and report its version and oracle table."""
    report = _probe_here(target) if getattr(sys, "frozen", False) else _run_probe(target)
    major, minor = int(report["major"]), int(report["minor"])
    release = _release_of(target, major, minor)
    from oracle.tables import known_versions

    table = select_table(major, minor, release, known_versions())
    return LibbpfInfo(str(report["version_string"]), major, minor, table, release)


def _run_probe(target: Target) -> dict[str, Any]:
    env = {**os.environ, **target.env()}
    argv = [sys.executable, "-c", _PROBE_SCRIPT, str(target.path), *EXPORTS]
    try:
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise LibbpfError(f"loading {target.path} hung for {_PROBE_TIMEOUT_S} s") from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        why = _summary(result.stderr)
        raise LibbpfError(f"loading {target.path} failed (exit {result.returncode}): {why}")
    report: dict[str, Any] = json.loads(lines[-1])
    if report.get("error") == "load":
        raise LibbpfError(f"cannot load {target.path}: {report['detail']}")
    if report.get("error") == "missing":
        missing = ", ".join(map(str, report["missing"]))
        raise LibbpfError(f"{target.path} is not a libbpf: it does not export {missing}")
    return report


#: libraries ``_probe_here`` loaded, kept loaded: a fuzz build registers its
#: coverage counters with libFuzzer when loaded, and unloading it would leave
#: libFuzzer writing to unmapped memory
_PROBED: Final[list[Any]] = []


def _probe_here(target: Target) -> dict[str, Any]:
    """``_run_probe``'s report, loading the library in this process (packaged harness)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_PROBE_CDEF)
    try:
        lib: Any = ffi.dlopen(str(target.path))
        _PROBED.append((ffi, lib))
        missing = [name for name in EXPORTS if not hasattr(lib, name)]
    except OSError as exc:
        raise LibbpfError(f"cannot load {target.path}: {exc}") from None
    if missing:
        raise LibbpfError(f"{target.path} is not a libbpf: it does not export {', '.join(missing)}")
    return {"version_string": ffi.string(lib.libbpf_version_string()).decode(),
            "major": lib.libbpf_major_version(), "minor": lib.libbpf_minor_version()}


def _summary(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    marked = [line for line in lines if "ERROR:" in line or "SUMMARY:" in line]
    return (marked[:1] or lines[-1:] or ["no output"])[0]


def _release_of(target: Target, major: int, minor: int) -> str | None:
    """The full release of the loaded library when known and consistent with major.minor."""
    if target.kind in ("release", "tree"):
        assert target.version is not None
        if _major_minor(target.version) != (major, minor):
            raise LibbpfError(
                f"the build of libbpf {target.version} at {target.path} reports {major}.{minor}: "
                f"delete {target.path.parent} and build again"
            )
        return target.version
    hints = [_dpkg_release(target.path)] if target.kind == "system" else []
    hints.append(_file_name_release(target.path))
    for hint in hints:
        if hint is not None and _major_minor(hint) == (major, minor):
            return hint
    return None


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _file_name_release(path: Path) -> str | None:
    match = re.fullmatch(r"libbpf\.so\.(\d+\.\d+\.\d+)", Path(os.path.realpath(path)).name)
    return match[1] if match else None


def _dpkg_release(path: Path) -> str | None:
    """The upstream version of the Debian package owning ``path``, or None."""
    if shutil.which("dpkg-query") is None:
        return None
    for candidate in dict.fromkeys([str(path), os.path.realpath(path)]):
        owner = _dpkg(["-S", candidate])
        if owner:
            package = owner.split(": ", 1)[0].split(",")[0].strip()
            return _upstream(_dpkg(["-W", "-f=${Version}", package]))
    return None


def _dpkg(args: list[str]) -> str:
    result = subprocess.run(["dpkg-query", *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def _upstream(debian_version: str) -> str | None:
    """``1:1.1.2-0+deb12u1`` -> ``1.1.2``."""
    match = re.match(r"(?:\d+:)?(\d+\.\d+\.\d+)", debian_version)
    return match[1] if match else None


def select_table(major: int, minor: int, release: str | None, known: tuple[str, ...]) -> str | None:
    """The oracle table for a libbpf reporting ``major.minor`` (see the module doc)."""
    if release is not None and release in known:
        return release
    same = [v for v in known if _major_minor(v) == (major, minor)]
    return max(same, key=lambda v: tuple(map(int, v.split(".")))) if same else None


def require_table(info: LibbpfInfo) -> str:
    """``info.table_version``, or an ``UnknownVersionError`` naming the nearest table."""
    if info.table_version is not None:
        return info.table_version
    from oracle.tables import unknown_version

    error: UnknownVersionError = unknown_version(info.release or f"{info.major}.{info.minor}")
    raise error
