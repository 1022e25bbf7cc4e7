"""Hostile files through the real CLI, each ``baton`` process measured: its peak resident
memory (its ``VmHWM``) stays within a few hundred MB where the file, read
without bounds, asks for GBs (each child also runs under an address-space limit, so a
regression fails here instead of taking the machine down). ``baton intake eml`` refuses a
header bomb and a file over the size bound, saying which file and why, and takes the good
file beside them; ``baton validate`` and ``baton deploy`` refuse a YAML alias bomb at its
file and line; ``baton import`` refuses gzip bombs (a 1 GB tar long-name header in a few
KB), members that are links, devices, paths out of the bundle or twice in it, and a YAML
alias bomb inside ``definitions.json``, importing nothing; ``baton import salesforce``
reports elements nested past the bound and reads a file of a million entity references in
linear time; ``baton ai train`` refuses a file over its row bound at the line it stops."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import orjson

from tests.e2e.test_cli import WIDE, _env, baton, copy_example, ok, one_line_error
from tests.unit.test_loader_limits import alias_bomb

ADDRESS_SPACE = 3 * 1024 * 1024 * 1024  # per child: a regression fails, the machine stays up
PEAK_MB = 250  # what a bounded refusal may take at most (a CLI process starts at ~80 MB)


# The child sets its own address-space limit, runs ``baton``, and writes its peak resident
# memory (VmHWM: its own, since exec; wait4's ru_maxrss would start from this test process's,
# inherited at fork) to the file named after the limit. (No preexec_fn: the test process
# may have threads.)
LIMITED = """
import resource, runpy, sys
limit, report = int(sys.argv.pop(1)), sys.argv.pop(1)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    runpy.run_module("baton.cli.main", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
"""


def measured(*args: str | Path, cwd: Path) -> tuple[int, str, str, int]:
    """``baton ARGS`` as a process of its own: (exit status, stdout, stderr, peak MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err, report = (Path(tmp) / name for name in ("out", "err", "peak"))
        with out.open("wb") as o, err.open("wb") as e:
            done = subprocess.run([sys.executable, "-c", LIMITED, str(ADDRESS_SPACE),
                                   str(report), *map(str, args)], cwd=cwd, env=_env(WIDE),
                                  stdout=o, stderr=e, timeout=600, check=False)
        assert report.exists(), f"no peak reported: {err.read_text()[-2000:]}"
        return (done.returncode, out.read_text(), err.read_text(),
                int(report.read_text()) // 1024)


def rows(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def test_intake_eml_refuses_bombs_and_oversize_files_and_takes_the_good_one(
        tmp_path: Path) -> None:
    proj = copy_example(tmp_path, "dealer_support")
    ok(baton("deploy", cwd=proj))
    mail = tmp_path / "mail"
    mail.mkdir()
    head = (b"From: Ana <ana@dealer.example>\r\nTo: support@dealers.baton.example\r\n"
            b"Message-ID: <%s@dealer.example>\r\n")
    # 1.6 MB of encoded words: more than 20 GB in email.policy.default's header parser
    (mail / "1-bomb.eml").write_bytes(head % b"bomb" + b"Subject: "
                                      + b"=?utf-8?q?a?=\r\n " * 100_000 + b"\r\n\r\nx\r\n")
    with (mail / "2-huge.eml").open("wb") as f:  # 30 MB: over the 25 MiB bound
        f.write(head % b"huge" + b"Subject: huge\r\n\r\n")
        f.truncate(30 * 1024 * 1024)  # (a sparse tail of NULs)
    (mail / "3-good.eml").write_bytes(head % b"good" + b"Subject: Invoice 7 is wrong\r\n\r\n"
                                      b"The invoice charges twice.\r\n")
    status, out, err, peak = measured("intake", "eml", mail, cwd=proj)
    assert status == 1 and "Traceback" not in err, (status, out, err)
    assert err.splitlines() == [
        (f"error: {mail / '1-bomb.eml'}: header Subject is 1,600,000 characters long: at most "
         "32,768 are read"),
        (f"error: {mail / '2-huge.eml'}: the file is over 26,214,400 bytes: at most 26,214,400 "
         "are read")], err
    assert "created" in out and "Invoice 7 is wrong" in out, out
    assert peak < PEAK_MB, f"peak {peak} MB"
    assert rows(proj / "baton.db", "baton_messages") == 1


def test_deploy_refuses_a_yaml_alias_bomb_where_it_is(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    (proj / "definitions" / "bomb.yaml").write_text(alias_bomb(9))  # 9^9 nodes expanded
    for command in ("validate", "deploy"):
        status, out, err, peak = measured(command, cwd=proj)
        assert status == 1 and "Traceback" not in err, (status, out, err)
        assert "bomb.yaml:1" in out + err and "aliases are expanded" in out + err, out + err
        assert peak < PEAK_MB, f"peak {peak} MB"
    assert not (proj / "baton.db").exists() or rows(proj / "baton.db",
                                                    "baton_definitions") == 0


def gzip_bomb(unpacked: int) -> bytes:
    """A .tar.gz whose first header is a GNU long name of ``unpacked`` bytes: gzip members
    of 1 MiB of "a" each, concatenated (a few KB in all); tarfile reads such a header whole
    before any member's size is known."""
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, unpacked
    one = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = one.compress(b"a" * (1 << 20)) + one.flush()
    first = zlib.compressobj(9, zlib.DEFLATED, 31)
    start = first.compress(header.tobuf(tarfile.GNU_FORMAT)) + first.flush()
    return start + chunk * (unpacked >> 20)


def bundle(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_import_refuses_gzip_bombs_and_odd_members_and_imports_nothing(tmp_path: Path) -> None:
    src = copy_example(tmp_path / "src")
    ok(baton("deploy", cwd=src))
    good = tmp_path / "good.tar.gz"
    ok(baton("export", "-o", good, cwd=src))
    with tarfile.open(good, "r:gz") as tar:
        parts = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    dst = copy_example(tmp_path / "dst")
    ok(baton("deploy", cwd=dst))
    before = rows(dst / "baton.db", "baton_definitions")

    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip_bomb(1 << 30))
    assert bomb.stat().st_size < 2 * 1024 * 1024
    status, out, err, peak = measured("import", bomb, cwd=dst)
    assert (status, out) == (1, ""), (status, out, err)
    assert err == (f"error: {bomb}: it unpacks to more than 16,777,216 bytes (at most "
                   "16,777,216 are read; --max-bytes to read more)\n"), err
    assert peak < PEAK_MB, f"peak {peak} MB"

    manifest = (member("manifest.json"), parts["manifest.json"])
    defs = (member("definitions.json"), parts["definitions.json"])
    odd = {
        "link": [manifest, (member("definitions.json", tarfile.SYMTYPE, "/etc/passwd"), b"")],
        "device": [manifest, (member("definitions.json", tarfile.CHRTYPE), b"")],
        "parent": [manifest, (member("../definitions.json"), parts["definitions.json"])],
        "absolute": [manifest, (member("/tmp/definitions.json"), parts["definitions.json"])],
        "twice": [manifest, defs, defs],
    }
    said = {
        "link": "unexpected member 'definitions.json' in the bundle",
        "device": "unexpected member 'definitions.json' in the bundle",
        "parent": "unexpected member '../definitions.json' in the bundle",
        "absolute": "unexpected member '/tmp/definitions.json' in the bundle",
        "twice": "definitions.json is in the bundle twice",
    }
    for name, content in odd.items():
        path = tmp_path / f"{name}.tar.gz"
        path.write_bytes(bundle(content))
        one_line_error(baton("import", path, cwd=dst), str(path), said[name])

    # a YAML alias bomb inside definitions.json: refused where a deploy refuses it
    entries = orjson.loads(parts["definitions.json"])
    entries.append({"kind": "object", "name": "Bomb", "version": 1, "active": True,
                    "file": "bomb.yaml", "source": alias_bomb(9)})
    yaml_bomb = tmp_path / "yaml-bomb.tar.gz"
    yaml_bomb.write_bytes(bundle([manifest, (member("definitions.json"), orjson.dumps(entries))]))
    status, out, err, peak = measured("import", yaml_bomb, cwd=dst)
    assert status == 1 and "Traceback" not in err, (status, out, err)
    assert "definitions/object/Bomb/v1.yaml" in out + err and "aliases are expanded" in out + err
    assert peak < PEAK_MB, f"peak {peak} MB"
    assert rows(dst / "baton.db", "baton_definitions") == before, "nothing was imported"

    # a bundle larger than the bound is read with --max-bytes
    status, out, err, _ = measured("import", good, "--max-bytes", "100", "--dry-run", cwd=dst)
    assert status == 1 and "unpacks to more than 100 bytes" in err, (status, out, err)
    ok(baton("import", good, "--max-bytes", str(64 * 1024 * 1024), "--dry-run", cwd=dst))


def test_salesforce_import_bounds_nesting_and_reads_entities_in_linear_time(
        tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "Deep.flow-meta.xml").write_bytes(b"<Flow>\n" + b"<a>" * 200_000 + b"</a>" * 200_000
                                               + b"</Flow>")
    # a million &amp; in one element: quadratic string building took minutes for 5 MB
    (flows / "Amp.flow-meta.xml").write_bytes(b"<Flow>\n<label>" + b"&amp;" * 1_000_000
                                              + b"</label>\n</Flow>")
    (flows / "Huge.flow-meta.xml").write_bytes(b"<Flow>" + b" " * (6 * 1024 * 1024) + b"</Flow>")
    status, out, err, peak = measured("import", "salesforce", flows, "--out", tmp_path / "q",
                                      cwd=tmp_path)
    assert status == 1 and "Traceback" not in err, (status, out, err)
    lines = err.splitlines()
    assert f"{flows / 'Deep.flow-meta.xml'}:2: elements nested more than 100 deep: not flow " \
           "metadata" in lines, err
    assert f"{flows / 'Huge.flow-meta.xml'}:1: file is larger than 5 MiB" in lines, err
    assert peak < PEAK_MB, f"peak {peak} MB"


def test_ai_train_refuses_a_file_over_the_row_bound_at_its_line(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    ok(baton("deploy", cwd=proj))
    csv = tmp_path / "labels.csv"
    with csv.open("w") as f:
        f.write("text,label\n")
        f.writelines(f"text {i},{'ab'[i % 2]}\n" for i in range(100_001))
    one_line_error(baton("ai", "train", "triage", "--from", csv, cwd=proj),
                   f"{csv}:100002: more than 100,000 rows")
