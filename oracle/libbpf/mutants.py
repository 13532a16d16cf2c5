"""Deliberately broken libbpf builds ("mutants"): proof that ``sec-oracle check`` notices.

A mutant is one source edit of libbpf's SEC() handler code — the code the
oracle models (``sec_def_matches``, ``find_sec_def``,
``libbpf_register_prog_handler``, ``libbpf_unregister_prog_handler``,
``libbpf_prog_type_by_name``, ``libbpf_attach_type_by_name``) — written down
as data in ``MUTANTS``.  ``build_mutant(version, name)`` builds one and returns
its ``libbpf.so.1``; ``sec-oracle check --libbpf <that path>`` must then exit 1
with a short trace (``tests/differential/test_mutants.py``).

Layout (``<cache>`` is ``debsrc.cache_dir()``):
  ``<cache>/build/<version>-mutant-<name>/``  a published build, as ``build``
      lays it out (``libbpf.so.<version>`` so the release table is chosen for
      the path, ``libbpf.so.1``, ``build.json`` with a ``mutant`` entry, ...)
  ``<cache>/build/<version>-mutant-<name>.failed.log``  the last failed build
  ``<cache>/build/.<version>-mutant-<name>.lock``       the build lock

Rules:
- An edit is an exact substring replacement of ``old`` by ``new`` in ``file``
  of a copy of the pristine release tree (``debsrc.source_tree``); the
  pristine tree is never written.
- ``old`` must occur exactly once in that release's file, else the edit is a
  one-line ``LibbpfError`` naming the mutant, the file and the count: a
  mutant never silently applies to the wrong place or not at all.
- ``versions`` lists the releases the edit is written for; building a mutant
  for any other release is an error (``old`` differs between releases).
- Every ``new`` carries a ``MUTANT <name>`` comment, so a patched tree or a
  disassembly says what was broken.
- Mutants are built as the ``plain`` variant only, through ``build.publish``:
  cached, idempotent, serialised by an exclusive lock, published by an atomic
  rename, failures kept in a log, exactly like release builds.

Invariants:
- Names are unique, lowercase words joined by ``-``, and do not end in a
  variant name (``build.published`` reads ``<version>-<variant>`` names).
- Each mutant changes behaviour the oracle can observe through its ops with a
  short case (at most 5 ops); an edit no case can reach in practice (e.g. the
  ``E2BIG`` check at ``INT_MAX`` handler ids) is not a mutant here.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from oracle.errors import LibbpfError
from oracle.libbpf import build as builder
from oracle.libbpf import debsrc

ALL_RELEASES: Final = tuple(debsrc.RELEASES)


@dataclass(frozen=True)
class Mutant:
    """One deliberate source edit: ``old`` (exactly once in ``file``) becomes ``new``."""

    name: str
    description: str
    old: str
    new: str
    versions: tuple[str, ...] = ALL_RELEASES
    file: str = "src/libbpf.c"

    def apply(self, text: str, version: str) -> str:
        """``text`` (``file`` of ``version``) with the edit made, or a one-line error."""
        count = text.count(self.old)
        if count != 1:
            raise LibbpfError(
                f"mutant {self.name}: its text to replace occurs {count} times in "
                f"{self.file} of libbpf {version}, not exactly once: fix oracle/libbpf/mutants.py"
            )
        return text.replace(self.old, self.new)


MUTANTS: Final[tuple[Mutant, ...]] = (
    Mutant(
        "plus-any-suffix",
        "sec_def_matches: a \"type+\" pattern accepts any suffix after the stem, "
        "not only \"\" or \"/...\" (the '/' separator check is dropped)",
        old="""\t\t/* exact match or has '/' separator */
\t\tif (sec_name[len] == '\\0' || sec_name[len] == '/')
\t\t\treturn true;
\t\treturn false;
""",
        new="""\t\t/* MUTANT plus-any-suffix: any suffix after the stem matches */
\t\treturn true;
""",
    ),
    Mutant(
        "slash-matches-stem",
        "sec_def_matches: a \"type/\" pattern also matches the bare SEC(\"type\")",
        old="""\tif (sec_def->sec[len - 1] == '/') {
\t\tif (str_has_pfx(sec_name, sec_def->sec))
\t\t\treturn true;
""",
        new="""\tif (sec_def->sec[len - 1] == '/') {
\t\tif (str_has_pfx(sec_name, sec_def->sec))
\t\t\treturn true;
\t\t/* MUTANT slash-matches-stem: "type/" also matches SEC("type") */
\t\tif (strncmp(sec_name, sec_def->sec, len - 1) == 0 && sec_name[len - 1] == '\\0')
\t\t\treturn true;
""",
    ),
    Mutant(
        "plain-prefix",
        "sec_def_matches: a plain pattern (no '+' or '/') matches every name it prefixes",
        old="""\treturn strcmp(sec_name, sec_def->sec) == 0;
}
""",
        new="""\t/* MUTANT plain-prefix: a plain pattern is a prefix match */
\treturn str_has_pfx(sec_name, sec_def->sec);
}
""",
    ),
    Mutant(
        "custom-after-builtin",
        "find_sec_def: the built-in section_defs are searched before the custom handlers",
        old="""\tn = custom_sec_def_cnt;
\tfor (i = 0; i < n; i++) {
\t\tsec_def = &custom_sec_defs[i];
\t\tif (sec_def_matches(sec_def, sec_name))
\t\t\treturn sec_def;
\t}

\tn = ARRAY_SIZE(section_defs);
\tfor (i = 0; i < n; i++) {
\t\tsec_def = &section_defs[i];
\t\tif (sec_def_matches(sec_def, sec_name))
\t\t\treturn sec_def;
\t}
""",
        new="""\t/* MUTANT custom-after-builtin: built-ins first */
\tn = ARRAY_SIZE(section_defs);
\tfor (i = 0; i < n; i++) {
\t\tsec_def = &section_defs[i];
\t\tif (sec_def_matches(sec_def, sec_name))
\t\t\treturn sec_def;
\t}

\tn = custom_sec_def_cnt;
\tfor (i = 0; i < n; i++) {
\t\tsec_def = &custom_sec_defs[i];
\t\tif (sec_def_matches(sec_def, sec_name))
\t\t\treturn sec_def;
\t}
""",
    ),
    Mutant(
        "fallback-first",
        "find_sec_def: the custom fallback handler (sec == NULL) answers every name, "
        "before any custom or built-in pattern is consulted",
        old="""\tint i, n;

\tn = custom_sec_def_cnt;
""",
        new="""\tint i, n;

\t/* MUTANT fallback-first: the fallback is consulted first */
\tif (has_custom_fallback_def)
\t\treturn &custom_fallback_def;

\tn = custom_sec_def_cnt;
""",
    ),
    Mutant(
        "unregister-swap-last",
        "libbpf_unregister_prog_handler: the removed handler's slot is filled with the last "
        "one (swap-with-last) instead of shifting the rest down, so registration order is lost",
        old="""\tfree(custom_sec_defs[i].sec);
\tfor (i = i + 1; i < custom_sec_def_cnt; i++)
\t\tcustom_sec_defs[i - 1] = custom_sec_defs[i];
\tcustom_sec_def_cnt--;
""",
        new="""\tfree(custom_sec_defs[i].sec);
\t/* MUTANT unregister-swap-last: order is not preserved */
\tcustom_sec_defs[i] = custom_sec_defs[custom_sec_def_cnt - 1];
\tcustom_sec_def_cnt--;
""",
    ),
    Mutant(
        "id-reuse",
        "libbpf_unregister_prog_handler: unregistering a custom handler decrements the last "
        "handler id, so the next registration reuses an id",
        old="""\t\tcustom_sec_defs[i - 1] = custom_sec_defs[i];
\tcustom_sec_def_cnt--;
""",
        new="""\t\tcustom_sec_defs[i - 1] = custom_sec_defs[i];
\tcustom_sec_def_cnt--;
\t/* MUTANT id-reuse: the id is handed out again */
\tlast_custom_sec_def_handler_id--;
""",
    ),
    Mutant(
        "first-id-zero",
        "libbpf_register_prog_handler: ids are post-incremented, so the first handler gets "
        "id 0 (which callers read as failure)",
        old="""\tsec_def->handler_id = ++last_custom_sec_def_handler_id;
""",
        new="""\t/* MUTANT first-id-zero: post-increment */
\tsec_def->handler_id = last_custom_sec_def_handler_id++;
""",
    ),
    Mutant(
        "opts-tail-unchecked",
        "libbpf_register_prog_handler: OPTS_VALID's check that the bytes beyond the known "
        "fields are zero is skipped (only sz >= sizeof(size_t) remains)",
        old="""\tif (!OPTS_VALID(opts, libbpf_prog_handler_opts))
\t\treturn libbpf_err(-EINVAL);
""",
        new="""\t/* MUTANT opts-tail-unchecked: no zero check of the tail */
\tif (opts && opts->sz < sizeof(size_t))
\t\treturn libbpf_err(-EINVAL);
""",
    ),
    Mutant(
        "ebusy-dropped",
        "libbpf_register_prog_handler: a second fallback (sec == NULL) replaces the first "
        "instead of failing with -EBUSY",
        old="""\t\tif (has_custom_fallback_def)
\t\t\treturn libbpf_err(-EBUSY);

""",
        new="""\t\t/* MUTANT ebusy-dropped: a second fallback replaces the first */

""",
    ),
    Mutant(
        "unregister-zero-id",
        "libbpf_unregister_prog_handler: handler id 0 is searched for (-ENOENT) instead of "
        "being rejected as invalid (-EINVAL)",
        old="""\tif (handler_id <= 0)
\t\treturn libbpf_err(-EINVAL);
""",
        new="""\t/* MUTANT unregister-zero-id: 0 is not rejected */
\tif (handler_id < 0)
\t\treturn libbpf_err(-EINVAL);
""",
    ),
    Mutant(
        "fallback-unregister-kept",
        "libbpf_unregister_prog_handler: unregistering the fallback succeeds but leaves it "
        "installed",
        old="""\t\tmemset(&custom_fallback_def, 0, sizeof(custom_fallback_def));
\t\thas_custom_fallback_def = false;
\t\treturn 0;
""",
        new="""\t\t/* MUTANT fallback-unregister-kept: still installed */
\t\treturn 0;
""",
    ),
    Mutant(
        "attach-ignores-attachable",
        "libbpf_attach_type_by_name: the SEC_ATTACHABLE flag is not checked, so every "
        "built-in pattern reports its expected attach type",
        old="""\tif (!(sec_def->cookie & SEC_ATTACHABLE))
\t\treturn libbpf_err(-EINVAL);
""",
        new="""\t/* MUTANT attach-ignores-attachable: SEC_ATTACHABLE not checked */
""",
    ),
    Mutant(
        "prog-type-outs-on-error",
        "libbpf_prog_type_by_name: on -ESRCH both out-parameters are zeroed instead of "
        "left untouched",
        old="""\tpr_debug("failed to guess program type from ELF section '%s'\\n", name);
""",
        new="""\t/* MUTANT prog-type-outs-on-error: outs written on failure */
\t*prog_type = BPF_PROG_TYPE_UNSPEC;
\t*expected_attach_type = 0;
\tpr_debug("failed to guess program type from ELF section '%s'\\n", name);
""",
    ),
)

BY_NAME: Final[dict[str, Mutant]] = {m.name: m for m in MUTANTS}


def mutant(name: str) -> Mutant:
    """The mutant called ``name``, or a one-line error listing them."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise LibbpfError(
            f"unknown mutant {name!r}: use one of {', '.join(BY_NAME)}"
        ) from None


def build_name(version: str, name: str) -> str:
    """``<version>-mutant-<name>``: the directory under ``build.build_root()``."""
    return f"{version}-mutant-{name}"


def mutant_dir(version: str, name: str) -> Path:
    """Where the build of mutant ``name`` of ``version`` is (or would be) published."""
    return builder.build_root() / build_name(version, name)


def built_mutant(version: str, name: str) -> Path | None:
    """The ``libbpf.so.1`` of a published mutant build, or None if not built."""
    return builder.published_so(mutant_dir(version, name))


def check_applies(chosen: Mutant, version: str) -> None:
    """A one-line error when ``chosen`` is not written for release ``version``."""
    debsrc.check_release(version)
    if version not in chosen.versions:
        raise LibbpfError(
            f"mutant {chosen.name} is written for libbpf {', '.join(chosen.versions)}, "
            f"not {version}"
        )


def patched_tree(pristine: Path, chosen: Mutant, version: str, into: Path) -> Path:
    """A copy of ``pristine`` at ``into`` with ``chosen``'s edit made; ``into`` is returned."""
    shutil.copytree(pristine, into, symlinks=True)
    target = into / chosen.file
    text = target.read_text(encoding="utf-8", errors="surrogateescape")
    patched = chosen.apply(text, version)
    target.unlink()  # never write through a link into the pristine tree
    target.write_text(patched, encoding="utf-8", errors="surrogateescape")
    return into


def build_mutant(version: str, name: str, *, force: bool = False) -> Path:
    """The ``libbpf.so.1`` of mutant ``name`` of ``version`` (plain), built on first use
    (and when damaged, or ``force``: ``build``'s rules)."""
    chosen = mutant(name)
    check_applies(chosen, version)
    done = None if force else builder.intact_so(mutant_dir(version, name))
    if done is not None:
        return done
    root = builder.build_root()
    directory = build_name(version, name)
    with debsrc.locked(root / f".{directory}.lock"):
        done = None if force else builder.intact_so(mutant_dir(version, name))
        if done is not None:
            return done
        builder.preflight()
        pristine = debsrc.source_tree(version)
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{directory}-src-") as tmp:
            tree = patched_tree(pristine, chosen, version, Path(tmp) / "libbpf")
            info = {"mutant": {"name": chosen.name, "description": chosen.description,
                               "file": chosen.file}}
            builder.publish(tree, version, "plain", directory,
                            f"{version} mutant {chosen.name}", info)
    done = built_mutant(version, name)
    if done is None:  # pragma: no cover - publish either renames or raises
        raise LibbpfError(f"build of libbpf {version} mutant {name} vanished from {root}")
    return done
