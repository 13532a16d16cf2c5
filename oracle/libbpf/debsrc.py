"""libbpf source trees from Debian's source packages, unpacked into a cache.

Rules:
- The four releases the oracle models come from Debian's archive, by exact
  Debian version (``RELEASES``).  Only the upstream ``.orig.tar.gz`` is used;
  Debian's packaging files are not needed (for 1.4.6 they are not even served).
- Fetching is ``apt-get source --download-only libbpf=<debian version>`` after
  making sure a ``deb-src`` entry for the suites exists (written once, as root).
- A tree is unpacked into ``<cache>/src/<version>`` under an exclusive file
  lock and published with an atomic rename, so two runs can fetch at once.
- Failures are ``LibbpfError`` with one line saying what and how to fix it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Final

from oracle.cache import cache_dir, locked
from oracle.errors import LibbpfError

__all__ = ["RELEASES", "cache_dir", "check_release", "locked", "source_tree"]

#: upstream version -> Debian source version that carries it
RELEASES: Final[dict[str, str]] = {
    "1.1.2": "1.1.2-0+deb12u1",
    "1.4.6": "1.4.6-1~bpo12+1",
    "1.5.0": "1.5.0-3",
    "1.7.0": "1.7.0-1",
}

DEB_SRC_SUITES: Final = "bookworm bookworm-backports trixie sid"
DEB_SRC_FILE: Final = Path("/etc/apt/sources.list.d/libbpf-sec-oracle-src.sources")
DEB_SRC_ENTRY: Final = f"""Types: deb-src
URIs: http://deb.debian.org/debian
Suites: {DEB_SRC_SUITES}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def check_release(version: str) -> str:
    """The Debian version for ``version``; an unknown one is a one-line error."""
    try:
        return RELEASES[version]
    except KeyError:
        known = ", ".join(RELEASES)
        message = f"unknown libbpf version {version!r}: known releases are {known}"
        raise LibbpfError(message) from None


def _has_deb_src() -> bool:
    for listing in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        with contextlib.suppress(OSError):
            text = listing.read_text()
            if "deb-src" in text and "sid" in text:
                return True
    return False


def _ensure_deb_src() -> None:
    if _has_deb_src():
        return
    try:
        DEB_SRC_FILE.write_text(DEB_SRC_ENTRY)
    except OSError as exc:
        raise LibbpfError(
            f"cannot add a deb-src entry ({exc.strerror}): run as root, or add deb-src for "
            f"suites {DEB_SRC_SUITES} to apt's sources yourself"
        ) from None
    _apt(["apt-get", "update", "-qq"], Path("/"))


def _apt(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise LibbpfError(f"{argv[0]} not found: libbpf sources come from Debian's archive")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def _download_orig(version: str, into: Path) -> Path:
    debian_version = check_release(version)
    _ensure_deb_src()
    argv = ["apt-get", "source", "--download-only", f"libbpf={debian_version}"]
    result = _apt(argv, into)
    orig = into / f"libbpf_{version}.orig.tar.gz"
    if not orig.exists():
        # The package lists may be stale: refresh once and try again.
        _apt(["apt-get", "update", "-qq"], Path("/"))
        result = _apt(argv, into)
    if not orig.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise LibbpfError(
            f"could not download libbpf {debian_version} source from Debian ({last}); "
            "check network access to the Debian archive and the deb-src entry"
        )
    return orig


def source_tree(version: str) -> Path:
    """The unpacked upstream source of ``version`` (fetched on first use)."""
    check_release(version)
    root = cache_dir() / "src"
    tree = root / version
    if (tree / "src" / "libbpf.c").exists():
        return tree
    with locked(root / f".{version}.lock"):
        if (tree / "src" / "libbpf.c").exists():
            return tree
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{version}-") as tmp:
            tmp_path = Path(tmp)
            orig = _download_orig(version, tmp_path)
            unpack = tmp_path / "unpack"
            with tarfile.open(orig) as tar:
                tar.extractall(unpack, filter="data")
            tops = [p for p in unpack.iterdir() if p.is_dir()]
            if len(tops) != 1 or not (tops[0] / "src" / "libbpf.c").exists():
                raise LibbpfError(f"{orig.name} does not hold a libbpf source tree")
            if tree.exists():
                shutil.rmtree(tree)
            os.replace(tops[0], tree)
            shutil.copy2(orig, root / orig.name)
    return tree
