"""What a run tests: the libbpf target, the model it is checked against, and this machine.

Rules:
- ``prepare`` resolves the target (building a release or tree on first use),
  probes it in a child process, and chooses the model (``model_for``) before
  anything runs, so bad input costs nothing and is one ``OracleError`` line.
- The model is a ``Profile`` (``oracle.model.versions``): a table plus
  behaviours.  Its table comes from, in order:
  a tree target's own source (``oracle.tables.trees``); ``--source DIR`` for a
  ``.so`` built from that tree; the shipped table of the library's release
  (``targets.select_table``).  A ``.so`` whose release has no shipped table
  and no ``--source`` is refused with one line naming ``--source``.
- ``--source`` must be a libbpf tree of the same major.minor as the library.
- ``Environment`` pickles (``check --jobs`` sends it to its pool).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from oracle import sourcetree
from oracle.errors import LibbpfError, UnknownVersionError
from oracle.libbpf import targets
from oracle.libbpf.lifecycle import bpf_permitted
from oracle.libbpf.targets import Target, probe, resolve
from oracle.model.versions import Profile, profile, profile_for
from oracle.tables import known_versions
from oracle.tables.trees import tree_table
from oracle.traces import LibbpfInfo


@dataclass(frozen=True)
class Environment:
    target: Target
    profile: Profile
    info: LibbpfInfo  # what traces and findings record of the library
    bpf: bool  # bpf() permitted here: Load/Attach run for real (else they answer NO_BPF)
    source: Path | None = None  # --source: the tree a PATH .so was built from

    @property
    def version(self) -> str:
        """The release the model answers for (its table's)."""
        return self.profile.version


def model_for(target: Target, probed: targets.LibbpfInfo, source: Path | None) -> Profile:
    """The profile ``target`` is checked against (module rules)."""
    if target.kind == "tree":
        assert target.tree is not None
        if source is not None:
            raise LibbpfError(f"--source is for a .so; the tree {target.tree} is its own source")
        return profile_for(tree_table(target.tree))
    if source is not None:
        tree = sourcetree.check_tree(source.expanduser(), f"--source {source}")
        table = tree_table(tree)
        if tuple(map(int, table.version.split(".")[:2])) != (probed.major, probed.minor):
            raise LibbpfError(
                f"--source {source} is libbpf {table.version}, but {target.path} reports "
                f"{probed.major}.{probed.minor}: give the tree it was built from")
        return profile_for(table)
    if probed.table_version is None:
        release = probed.release or f"{probed.major}.{probed.minor}"
        raise UnknownVersionError(
            f"no shipped table for libbpf {release} (shipped: {', '.join(known_versions())}): "
            f"add --source DIR, the libbpf tree {target.path.name} was built from, "
            "or test the tree itself with --libbpf DIR")
    return profile(probed.table_version)


def prepare(libbpf: str, source: Path | None = None) -> Environment:
    """Resolve, probe and choose the model; every failure is a one-line ``OracleError``."""
    target = resolve(libbpf)
    model = model_for(target, probe(target), source)
    sha = hashlib.sha256(target.path.read_bytes()).hexdigest()
    variant = target.kind if target.kind in ("system", "path") and target.variant == "plain" \
        else target.variant
    info = LibbpfInfo(version=model.version, variant=variant, so_sha256=sha,
                      path=str(target.path))
    return Environment(target, model, info, bpf_permitted(), source)
