"""The generated libbpf tables: loader, generator and ``sec-oracle tables``.

Facts below were read off the upstream sources (``src/libbpf.c`` and
``include/uapi/linux/bpf.h`` of each orig tarball).  The regeneration test
checks each committed JSON against its source byte for byte: Debian's four
releases from the cache (``debsrc.source_tree``, fetched on first use), the
upstream-only tables from ``$SEC_ORACLE_UPSTREAM_TREES/<version>`` when set
(the tree at the commit the table records), else skipped saying so
(``tests.targets.table_tree_or_skip``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oracle.cli import main
from oracle.errors import UnknownVersionError
from oracle.tables import SecDef, Table, known_versions, load_table, table_json
from oracle.tables import generate as gen
from tests.targets import table_tree_or_skip, upstream_commit

#: Debian's four releases, plus upstream releases generated from their tags
VERSIONS = ("0.8.3", "1.0.3", "1.1.2", "1.2.3", "1.3.4", "1.4.6", "1.4.7", "1.5.0", "1.5.1",
            "1.6.3", "1.7.0")
#: SEC_DEF( occurrences inside section_defs[] of each release
ENTRY_COUNTS = {"0.8.3": 78, "1.0.3": 81, "1.1.2": 81, "1.2.3": 82, "1.3.4": 99, "1.4.6": 100,
                "1.4.7": 100, "1.5.0": 101, "1.5.1": 101, "1.6.3": 103, "1.7.0": 105}


def by_sec(table: Table, sec: bytes) -> SecDef:
    """The entry with pattern ``sec``."""
    (found,) = [d for d in table.section_defs if d.sec == sec]
    return found


# --------------------------------------------------------------------------- loader


def test_known_versions_sorted() -> None:
    assert known_versions() == VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_tables_load(version: str) -> None:
    table = load_table(version)
    assert table.version == version
    assert len(table.section_defs) == ENTRY_COUNTS[version]
    assert [d.index for d in table.section_defs] == list(range(ENTRY_COUNTS[version]))
    assert load_table(version) is table  # cached
    assert hash(table) == hash(load_table(version))
    assert all(d.prog_prepare_load_fn == "libbpf_prepare_prog_load" for d in table.section_defs)


@pytest.mark.parametrize("version", VERSIONS)
def test_entry_count_matches_source(version: str) -> None:
    text = (table_tree_or_skip(version) / "src" / "libbpf.c").read_text()
    body = text[text.index("section_defs[] = {") : text.index("\n};", text.index("section_defs[]"))]
    assert len(re.findall(r"SEC_DEF\(", body)) == ENTRY_COUNTS[version]


def test_spot_facts_1_7_0() -> None:
    table = load_table("1.7.0")
    first = table.section_defs[0]
    assert (first.sec, first.cookie, first.flags) == (b"socket", 0, ("SEC_NONE",))
    assert table.prog_type_name(first.prog_type) == "BPF_PROG_TYPE_SOCKET_FILTER"
    assert first.prog_type == 1 and first.expected_attach_type == 0

    migrate = by_sec(table, b"sk_reuseport/migrate")
    assert migrate.flags == ("SEC_ATTACHABLE",) and migrate.cookie == 2
    assert (
        table.attach_type_name(migrate.expected_attach_type) == "BPF_SK_REUSEPORT_SELECT_OR_MIGRATE"
    )
    assert migrate.expected_attach_type == 40

    kprobe = by_sec(table, b"kprobe+")
    assert kprobe.prog_attach_fn == "attach_kprobe" and kprobe.prog_setup_fn is None
    assert table.prog_type_name(kprobe.prog_type) == "BPF_PROG_TYPE_KPROBE"

    fentry_s = by_sec(table, b"fentry.s+")
    assert fentry_s.flags == ("SEC_ATTACH_BTF", "SEC_SLEEPABLE") and fentry_s.cookie == 12
    assert by_sec(table, b"xdp").flags == ("SEC_ATTACHABLE_OPT",)
    assert by_sec(table, b"xdp").cookie == 3
    assert by_sec(table, b"usdt.s+").cookie == 32 | 8
    assert (
        by_sec(table, b"netfilter").prog_type == table.prog_types["BPF_PROG_TYPE_NETFILTER"] == 32
    )
    assert table.sec_def_flags["SEC_USDT"] == 32
    assert table.section_defs[-1].sec == b"netfilter"


def test_spot_facts_across_releases() -> None:
    old, new = load_table("1.1.2"), load_table("1.7.0")
    assert by_sec(old, b"usdt+").flags == ("SEC_NONE",)
    assert by_sec(new, b"usdt+").flags == ("SEC_USDT",)
    assert "SEC_USDT" not in old.sec_def_flags
    assert "BPF_PROG_TYPE_NETFILTER" not in old.prog_types
    assert b"fsession+" not in {d.sec for d in load_table("1.5.0").section_defs}
    assert by_sec(new, b"fsession+").prog_attach_fn == "attach_trace"
    assert by_sec(load_table("1.5.0"), b"kprobe.session+").prog_attach_fn == "attach_kprobe_session"
    assert not any(name.startswith("__MAX") for name in new.attach_types)
    # 0 is both "no attach type" and BPF_CGROUP_INET_INGRESS
    assert by_sec(new, b"cgroup_skb/ingress").expected_attach_type == 0
    assert new.attach_type_name(0) == "BPF_CGROUP_INET_INGRESS"


def test_unknown_version_names_nearest() -> None:
    with pytest.raises(UnknownVersionError) as info:
        load_table("1.6.0")
    assert str(info.value) == (
        f"no table for libbpf 1.6.0; nearest known is 1.6.3 (known: {', '.join(VERSIONS)})"
    )
    for near_miss in ("1.7", "v1.7.0", "1.7.1", "2.0"):
        with pytest.raises(UnknownVersionError, match=r"nearest known is 1\.7\.0 "):
            load_table(near_miss)
    with pytest.raises(UnknownVersionError, match=r"^no table for libbpf 'nope' \(known: "):
        load_table("nope")


# --------------------------------------------------------------------------- generator


@pytest.mark.parametrize("version", VERSIONS)
def test_regenerate_is_byte_identical(version: str, tmp_path: Path) -> None:
    tree, commit = table_tree_or_skip(version), upstream_commit(version)
    argv = ["--version", version, "--source", str(tree), "--out", str(tmp_path)]
    if commit is not None:
        argv += ["--upstream", commit]
    assert gen.main(argv) == 0  # a Debian tree's orig tarball (beside it in the cache) is read
    committed = table_json(version)
    assert (tmp_path / f"libbpf-{version}.json").read_text() == committed
    if commit is None:  # a Debian source: its orig tarball was checked and recorded
        assert '"orig_sha256": null' not in committed


FAKE_BPF_H = """
enum bpf_prog_type {
\tBPF_PROG_TYPE_UNSPEC,
\tBPF_PROG_TYPE_KPROBE = 2, /* explicit */
\tBPF_PROG_TYPE_XDP,
\tBPF_PROG_TYPE_ALIAS = BPF_PROG_TYPE_KPROBE,
#define BPF_PROG_TYPE_OLD BPF_PROG_TYPE_XDP
\t__MAX_BPF_PROG_TYPE
};
enum bpf_attach_type {
\tBPF_A,
\tBPF_B = (1 << 2),
\t__MAX_BPF_ATTACH_TYPE
};
"""

FAKE_LIBBPF_C = """
enum sec_def_flags {
\tSEC_NONE = 0,
\tSEC_X = 1, // a flag
\tSEC_Y = 2,
\tSEC_XY = SEC_X | SEC_Y,
};
struct bpf_sec_def {
\tchar *sec;
\tenum bpf_prog_type prog_type;
\tenum bpf_attach_type expected_attach_type;
\tlong cookie;
\tint handler_id;
\tlibbpf_prog_setup_fn_t prog_setup_fn;
\tlibbpf_prog_prepare_load_fn_t prog_prepare_load_fn;
\tlibbpf_prog_attach_fn_t prog_attach_fn;
};
#define SEC_DEF(sec_pfx, ptype, atype, flags, ...) {\t\t\t    \\
\t.sec = (char *)sec_pfx,\t\t\t\t\t\t    \\
\t.prog_type = BPF_PROG_TYPE_##ptype,\t\t\t\t    \\
\t.expected_attach_type = atype,\t\t\t\t\t    \\
\t.cookie = (long)(flags),\t\t\t\t\t    \\
\t.prog_prepare_load_fn = libbpf_prepare_prog_load,\t\t    \\
\t__VA_ARGS__\t\t\t\t\t\t\t    \\
}
static int libbpf_prepare_prog_load(void);
static int attach_a(void);
static int setup_a(void);
static const struct bpf_sec_def section_defs[] = {
\tSEC_DEF("plain",\t\tKPROBE, 0, SEC_NONE),
\t/* SEC_DEF("commented", XDP, 0, SEC_NONE), */
\tSEC_DEF("wrapped+",\t\tXDP,
\t\tBPF_B, SEC_X | SEC_Y, attach_a),
\tSEC_DEF("designated",\tKPROBE, BPF_A, SEC_XY, .prog_setup_fn = setup_a),
};
"""


def fake_tree(root: Path, libbpf_c: str = FAKE_LIBBPF_C, bpf_h: str = FAKE_BPF_H) -> Path:
    """A minimal source tree with the two files the generator reads."""
    (root / "src").mkdir(parents=True)
    (root / "include/uapi/linux").mkdir(parents=True)
    (root / gen.LIBBPF_C).write_text(libbpf_c)
    (root / gen.BPF_H).write_text(bpf_h)
    return root


def test_generator_parses_c_forms(tmp_path: Path) -> None:
    document = gen.build_table("1.7.0", fake_tree(tmp_path), None)
    assert document["source"]["orig_sha256"] is None
    assert document["bpf_prog_type"] == {
        "enumerators": [
            ["BPF_PROG_TYPE_UNSPEC", 0],
            ["BPF_PROG_TYPE_KPROBE", 2],
            ["BPF_PROG_TYPE_XDP", 3],
            ["BPF_PROG_TYPE_ALIAS", 2],
        ],
        "max": 3,
    }
    assert document["bpf_attach_type"]["enumerators"] == [["BPF_A", 0], ["BPF_B", 4]]
    assert document["sec_def_positional_start"] == "prog_attach_fn"
    plain, wrapped, designated = document["section_defs"]
    assert plain["sec"] == "plain" and plain["expected_attach_type"] == {"name": None, "value": 0}
    assert wrapped["sec"] == "wrapped+" and wrapped["prog_attach_fn"] == "attach_a"
    assert wrapped["flags"] == {"names": ["SEC_X", "SEC_Y"], "value": 3}
    assert wrapped["prog_type"] == {"name": "BPF_PROG_TYPE_XDP", "value": 3}
    assert designated["prog_setup_fn"] == "setup_a" and designated["prog_attach_fn"] is None
    assert designated["expected_attach_type"] == {"name": "BPF_A", "value": 0}
    assert designated["flags"] == {"names": ["SEC_XY"], "value": 3}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'SEC_DEF("plain",\t\tKPROBE, 0, SEC_NONE),',
            'SEC_DEF("plain", KPROBE, 0, SEC_Z),',
            "SEC_Z",
        ),
        ("KPROBE, BPF_A, SEC_XY", "KPROBE, BPF_NOPE, SEC_XY", "BPF_NOPE"),
        ("attach_a),", "no_such_fn),", "no_such_fn"),
        ('\tSEC_DEF("plain",', '#if 1\n\tSEC_DEF("plain",', "directive"),
    ],
)
def test_generator_fails_loudly(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in FAKE_LIBBPF_C
    tree = fake_tree(tmp_path, FAKE_LIBBPF_C.replace(old, new))
    with pytest.raises(gen.SourceParseError, match=message):
        gen.build_table("1.7.0", tree, None)


def test_generator_rejects_empty_table(tmp_path: Path) -> None:
    body = FAKE_LIBBPF_C[FAKE_LIBBPF_C.index("section_defs[] = {") :]
    empty = FAKE_LIBBPF_C.replace(body, "section_defs[] = {\n};\n")
    with pytest.raises(gen.SourceParseError, match="no entries"):
        gen.build_table("1.7.0", fake_tree(tmp_path, empty), None)


# --------------------------------------------------------------------------- command line


def test_cli_diff_1_1_2_to_1_7_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tables", "diff", "1.1.2", "1.7.0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("libbpf 1.1.2 -> 1.7.0: section_defs 81 -> 105 entries\n")
    added = [line for line in out.splitlines() if line.startswith("  + ")]
    assert any(re.search(r"\bfsession\+\s+TRACING\s+BPF_TRACE_FSESSION\b", line) for line in added)
    assert "added (24):" in out and "removed (0):" in out
    assert "~ usdt+: flags SEC_NONE -> SEC_USDT; cookie 0 -> 32" in out
    assert "+ SEC_USDT = 32" in out and "+ BPF_PROG_TYPE_NETFILTER = 32" in out


def test_cli_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tables", "show", "1.7.0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "libbpf 1.7.0 (Debian 1.7.0-1): 105 section_defs"
    assert lines[1].split() == [
        "IDX",
        "SEC",
        "PROG_TYPE",
        "EXPECTED_ATTACH_TYPE",
        "FLAGS",
        "ATTACH_FN",
    ]
    assert lines[2].split() == ["0", "socket", "SOCKET_FILTER", "-", "SEC_NONE", "-"]
    assert len(lines) == 2 + 105
    starts = {len(line) - len(line.lstrip()[len(line.split()[0]) :].lstrip()) for line in lines[2:]}
    assert starts == {lines[1].index("SEC")}  # the SEC column is aligned


def test_cli_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tables", "show", "1.4.6", "--json"]) == 0
    assert capsys.readouterr().out == table_json("1.4.6")


@pytest.mark.parametrize("argv", [["tables", "show", "1.6.0"], ["tables", "diff", "1.1.2", "9"]])
def test_cli_bad_version(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("sec-oracle: error: no table for libbpf ")
