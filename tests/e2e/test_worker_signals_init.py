"""``baton init FOLDER`` where the folder cannot be made is one line, ``error: cannot create
FOLDER: <why>``, exit 1 (not a traceback and "this is a bug in Baton", exit 70), and leaves
nothing half-made behind. (Beside the worker's signal tests: brief M's other CLI item.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.test_cli import baton, ok, one_line_error


def test_init_where_no_folder_can_be_made_is_one_line(tmp_path: Path) -> None:
    one_line_error(baton("init", "/proc/baton-init-test", cwd=tmp_path),
                   "cannot create /proc/baton-init-test: No such file or directory")
    p = baton("init", "/proc/baton-init-test", "--json", cwd=tmp_path)
    assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr)
    error = json.loads(p.stderr)["error"]
    assert error["message"].startswith("cannot create /proc/baton-init-test: ")
    assert error["exit_code"] == 1


def test_init_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    one_line_error(baton("init", "notes.txt/proj", cwd=tmp_path),
                   "cannot create notes.txt/proj: Not a directory")
    one_line_error(baton("init", "notes.txt", cwd=tmp_path), "notes.txt exists and is not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_init_into_a_folder_with_files_is_refused_and_leaves_them(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "mine.txt").write_text("keep")
    one_line_error(baton("init", "proj", cwd=tmp_path), "proj exists and is not empty")
    assert [p.name for p in (tmp_path / "proj").iterdir()] == ["mine.txt"]
    # an empty folder is fine, as a new one is
    (tmp_path / "empty").mkdir()
    ok(baton("init", "empty", cwd=tmp_path))
    assert (tmp_path / "empty" / "baton.toml").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through folder permissions")
def test_init_without_permission_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        one_line_error(baton("init", "locked/proj", cwd=tmp_path),
                       "cannot create locked/proj: Permission denied")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)
