"""``baton.cli.params``: the filter check that names the valid values, and Typer's option
coercion without pydantic for plain values (the rest, and every error, still Typer's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.testing import CliRunner

from baton.cli.params import install_fast_coercion, listed, one_of

REPO = Path(__file__).resolve().parents[2]


def _app(seen: dict[str, object]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def go(n: Annotated[int, typer.Option("--n")] = 1,
           x: Annotated[float, typer.Option("--x")] = 0.5,
           name: Annotated[str | None, typer.Option("--name")] = None,
           tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
           flag: Annotated[bool, typer.Option("--flag")] = False,
           where: Annotated[Path | None, typer.Option("--where")] = None,
           status: Annotated[str | None, typer.Option("--status", callback=one_of(["a", "b"]))] = None,
           ) -> None:
        seen.update(n=n, x=x, name=name, tag=tag, flag=flag, where=where, status=status)

    @app.command()
    def other() -> None:
        pass

    return app


def test_plain_values_convert_and_the_rest_is_typers() -> None:
    assert install_fast_coercion() is True
    assert install_fast_coercion() is True  # twice is once
    seen: dict[str, object] = {}
    runner = CliRunner()
    r = runner.invoke(_app(seen), ["go", "--n", "-42", "--x", "2.5", "--name", "7",
                                   "--tag", "p", "--tag", "q", "--flag", "--where", "a/b",
                                   "--status", "b"])
    assert r.exit_code == 0, r.output
    assert seen == {"n": -42, "x": 2.5, "name": "7", "tag": ["p", "q"], "flag": True,
                    "where": Path("a/b"), "status": "b"}
    seen.clear()
    assert runner.invoke(_app(seen), ["go"]).exit_code == 0
    assert seen == {"n": 1, "x": 0.5, "name": None, "tag": None, "flag": False, "where": None,
                    "status": None}
    bad = runner.invoke(_app(seen), ["go", "--n", "many"])
    assert bad.exit_code == 2 and "Invalid value for '--n'" in bad.output, bad.output
    assert "integer" in bad.output
    bad = runner.invoke(_app(seen), ["go", "--status", "c"])
    assert bad.exit_code == 2 and "'c' is not one of: a, b" in bad.output, bad.output


def test_plain_values_do_not_import_pydantic() -> None:
    code = ("import sys, json, typer\nfrom typing import Annotated\n"
            "from baton.cli.params import install_fast_coercion\ninstall_fast_coercion()\n"
            "app = typer.Typer()\n"
            "@app.command()\n"
            "def go(n: Annotated[int, typer.Option('--n')] = 1, s: str = 'x',\n"
            "       t: Annotated[list[str] | None, typer.Option('--t')] = None) -> None:\n"
            "    print(json.dumps([n, s, t]))\n"
            "@app.command()\n"
            "def other() -> None: pass\n"
            "try:\n    app(['go', '--n', '3', '--s', 'y', '--t', 'a'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps('pydantic' in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = str(REPO / "src")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=True)
    values, pydantic_loaded = (json.loads(line) for line in p.stdout.splitlines()[-2:])
    assert values == [3, "y", ["a"]]
    assert pydantic_loaded is False


def test_listed() -> None:
    assert listed(["a"]) == "a" and listed(["a", "b", "c"]) == "a, b or c"


def test_path_values_convert_without_pydantic_and_refusals_are_typers() -> None:
    """``baton deploy PATH``'s argument: ``Path(text)`` as Typer's adapter makes it, Typer's
    own path checks, and a refused value reported by Typer in its words (the text as typed,
    trailing slash and all), in a fresh interpreter that never imports pydantic on success."""
    code = ("import sys, json, typer\nfrom pathlib import Path\nfrom typing import Annotated\n"
            "from baton.cli.params import install_fast_coercion\ninstall_fast_coercion()\n"
            "app = typer.Typer()\n"
            "@app.command()\n"
            "def go(p: Annotated[Path | None, typer.Argument()] = None,\n"
            "       there: Annotated[Path, typer.Option(exists=True)] = Path('.'),\n"
            "       out: Annotated[Path, typer.Option()] = Path('x.db')) -> None:\n"
            "    print(json.dumps([repr(p), repr(there), repr(out)]))\n"
            "@app.command()\n"
            "def other() -> None: pass\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps('pydantic' in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = str(REPO / "src")

    def go(*args: str) -> tuple[list[str], bool, str]:
        p = subprocess.run([sys.executable, "-c", code, "go", *args], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=120, check=True)
        lines = p.stdout.splitlines()
        values = json.loads(lines[-2]) if len(lines) > 1 else []
        return values, json.loads(lines[-1]), p.stderr

    values, pydantic_loaded, _ = go("defs/", "--there", "src/", "--out", "")
    assert values == ["PosixPath('defs')", "PosixPath('src')", "PosixPath('.')"]
    assert pydantic_loaded is False
    values, _, _ = go()
    assert values == ["None", "PosixPath('.')", "PosixPath('x.db')"]
    values, pydantic_loaded, err = go("--there", "no/such/")
    assert values == [] and pydantic_loaded is True  # Typer's own coercion said why
    assert "path 'no/such/' does not exist." in " ".join(err.replace("│", " ").split()), err
