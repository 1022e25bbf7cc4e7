"""Settings in one place: only the edges read the environment, nothing writes it, every
variable is read into :class:`Settings`, and the README documents exactly those."""

from __future__ import annotations

import ast
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from baton.errors import ConfigError
from baton.project import Project, load_project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings, SmtpSettings, environment_variables

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "baton"
EDGES = ("cli", "web")  # entry points: they build Settings and pass it in
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
MUTATORS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in ("environ", "environb")


def _environment_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every touch of the process environment, read or write."""
    uses: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES:
            uses.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            uses.extend((node.lineno, f"from os import {a.name}") for a in node.names
                        if a.name in ENV_NAMES)
    return uses


def _environment_writes(tree: ast.AST) -> list[tuple[int, str]]:
    writes: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value) \
                and isinstance(node.ctx, (ast.Store, ast.Del)):
            writes.append((node.lineno, "os.environ[...] assigned or deleted"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if _is_environ(node.func.value) and node.func.attr in MUTATORS:
                writes.append((node.lineno, f"os.environ.{node.func.attr}()"))
            elif node.func.attr in ("putenv", "unsetenv"):
                writes.append((node.lineno, f"os.{node.func.attr}()"))
    return writes


def _sources() -> list[tuple[str, ast.AST, str]]:
    return [(f.relative_to(SRC).as_posix(), ast.parse(f.read_text()), f.read_text())
            for f in sorted(SRC.rglob("*.py"))]


def test_only_the_edges_and_settings_read_the_environment() -> None:
    bad = []
    for rel, tree, text in _sources():
        if rel.split("/")[0] in EDGES or rel == "settings.py":
            continue
        uses = _environment_uses(tree)
        bad += [f"{rel}:{line} {what}" for line, what in uses]
    assert not bad, "read the environment outside cli/, web/ and settings.py:\n" + "\n".join(bad)


def test_nothing_writes_the_environment() -> None:
    bad = [f"{rel}:{line} {what}" for rel, tree, _ in _sources()
           for line, what in _environment_writes(tree)]
    assert not bad, "\n".join(bad)


def test_the_checks_see_reads_and_writes() -> None:
    code = ast.parse("import os\nfrom os import getenv\nos.environ['A'] = '1'\n"
                     "os.environ.setdefault('B', '2')\ndel os.environ['C']\nos.putenv('D', '')\n"
                     "x = os.environ.get('E')\n")
    assert len(_environment_uses(code)) == 6
    assert [w for _, w in _environment_writes(code)] == [
        "os.environ[...] assigned or deleted", "os.environ.setdefault()",
        "os.environ[...] assigned or deleted", "os.putenv()"]


def _documented() -> set[str]:
    """BATON_* variables in the first column of the README's tables."""
    found: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("|"):
            found.update(re.findall(r"BATON_[A-Z_]+", line.split("|")[1]))
    return found


def test_the_readme_tables_list_exactly_the_settings() -> None:
    variables = environment_variables()
    assert len(variables) == len(set(variables))
    assert set(variables) - _documented() == set(), "in Settings, not in the README"
    assert _documented() - set(variables) == set(), "in the README, not in Settings"


# Every variable, set to a value that is not its default, and the setting it must change.
SAMPLES = {
    "BATON_DB": ("postgresql://db/x", lambda s: s.database == "postgresql://db/x"),
    "BATON_CLOCK_OFFSET": ("7200", lambda s: s.clock_offset == 7200.0),
    "BATON_SQLITE_SYNCHRONOUS": ("NORMAL", lambda s: s.sqlite_synchronous == "NORMAL"),
    "BATON_SQLITE_NULLPOOL": ("1", lambda s: s.sqlite_nullpool is True),
    "BATON_PG_POOL_SIZE": ("9", lambda s: s.pg_pool_size == 9),
    "BATON_PG_POOL_OVERFLOW": ("0", lambda s: s.pg_pool_overflow == 0),
    "BATON_WORKER_HOST": ("elsewhere", lambda s: s.worker_host == "elsewhere"),
    "BATON_PLAN_COMMITS": ("0", lambda s: s.plan_commits is False),
    "BATON_FAULT": ("after_flow@2", lambda s: s.fault == "after_flow@2"),
    "BATON_MAX_BODY_BYTES": ("2048", lambda s: s.max_body_bytes == 2048),
    "BATON_SMTP_HOST": ("mail", lambda s: s.smtp.host == "mail" and s.notify_assignments),
    "BATON_SMTP_PORT": ("2525", lambda s: s.smtp.port == 2525),
    "BATON_SMTP_FROM": ("b@x", lambda s: s.smtp.sender == "b@x"),
    "BATON_SMTP_USER": ("u", lambda s: s.smtp.user == "u"),
    "BATON_SMTP_PASSWORD": ("pw", lambda s: s.smtp.password == "pw" and "pw" not in repr(s)),
    "BATON_SMTP_STARTTLS": ("1", lambda s: s.smtp.starttls is True),
    "BATON_BASE_URL": ("https://b.example/", lambda s: s.smtp.base_url == "https://b.example"),
    "BATON_NOTIFY_ASSIGNMENTS": ("1", lambda s: s.notify_assignments is True),
    "BATON_NOTIFY_ADDRESSES": (json.dumps({"sup": "s@x"}),
                               lambda s: s.notify_addresses == {"sup": "s@x"}),
    "BATON_USER_EMAILS": (json.dumps({"ann": "a@x"}), lambda s: s.user_emails == {"ann": "a@x"}),
    "BATON_ISOLATION": ("process", lambda s: s.isolation == "process"),
    "BATON_FLOW_MEMORY_MB": ("256", lambda s: s.flow_memory_mb == 256),
    "BATON_TRUSTED_PROXIES": ("10.0.0.5, 10.1.0.0/16",
                              lambda s: s.trusted_proxies == ("10.0.0.5/32", "10.1.0.0/16")),
    "BATON_COOKIE_SECURE": ("1", lambda s: s.cookie_secure is True),
    "BATON_LOG_FORMAT": ("JSON", lambda s: s.log_format == "json"),
    "BATON_SECRETS_FILE": ("/etc/baton/secrets.toml",
                           lambda s: s.secrets_file == "/etc/baton/secrets.toml"),
    "BATON_PUBLIC_URL": ("https://baton.example/", lambda s: s.public_url == "https://baton.example"),
    "BATON_AI_PROVIDER": ("Offline", lambda s: s.ai_provider == "offline"),
    "BATON_INTAKE_MAX_MESSAGE_BYTES": ("41943040",
                                       lambda s: s.intake.max_message_bytes == 40 * 1024 * 1024),
    "BATON_INTAKE_PDF_MAX_PAGES": ("20", lambda s: s.intake.pdf_max_pages == 20),
    "BATON_INTAKE_PDF_SECONDS": ("2.5", lambda s: s.intake.pdf_seconds == 2.5),
    "BATON_INTAKE_PDF_MESSAGE_SECONDS": ("10", lambda s: s.intake.pdf_message_seconds == 10.0),
    "BATON_INTAKE_PDF_MEMORY_MB": ("512", lambda s: s.intake.pdf_memory_mb == 512),
    "BATON_AI_CONNECTION": ("llm", lambda s: s.ai_connection == "llm"),
    "BATON_AI_MODEL": ("gpt-4o-mini", lambda s: s.ai_model == "gpt-4o-mini"),
    "BATON_AI_ENCODER": ("OFF", lambda s: s.ai_encoder == "off"),
    "BATON_AI_ENCODER_FEW": ("yes", lambda s: s.ai_encoder_few is True),
}


def test_every_variable_is_read() -> None:
    assert set(SAMPLES) == set(environment_variables())
    assert Settings.from_environment({}) == Settings()
    for name, (value, holds) in SAMPLES.items():
        assert holds(Settings.from_environment({name: value})), name


def test_bad_values_name_their_variable() -> None:
    with pytest.raises(ConfigError, match="BATON_CLOCK_OFFSET='soon' is not a number"):
        Settings.from_environment({"BATON_CLOCK_OFFSET": "soon"})
    with pytest.raises(ConfigError, match="BATON_SMTP_PORT"):
        Settings.from_environment({"BATON_SMTP_PORT": "smtp"})
    with pytest.raises(ConfigError, match="BATON_ISOLATION.*'fork' is not one of thread, process"):
        Settings.from_environment({"BATON_ISOLATION": "fork"})
    with pytest.raises(ConfigError, match="BATON_FLOW_MEMORY_MB"):
        Settings.from_environment({"BATON_FLOW_MEMORY_MB": "-5"})
    with pytest.raises(ConfigError, match="BATON_TRUSTED_PROXIES: 'proxy' is not an IP"):
        Settings.from_environment({"BATON_TRUSTED_PROXIES": "10.0.0.1,proxy"})
    with pytest.raises(ConfigError, match="BATON_COOKIE_SECURE='maybe' is not auto, 1 or 0"):
        Settings.from_environment({"BATON_COOKIE_SECURE": "maybe"})
    with pytest.raises(ConfigError, match="BATON_LOG_FORMAT='xml' is not one of text, json"):
        Settings.from_environment({"BATON_LOG_FORMAT": "xml"})
    assert Settings.from_environment({"BATON_COOKIE_SECURE": "0"}).cookie_secure is False
    assert Settings.from_environment({"BATON_COOKIE_SECURE": "auto"}).cookie_secure is None
    s = Settings.from_environment({"BATON_USER_EMAILS": "[1]", "BATON_NOTIFY_ADDRESSES": "{"})
    assert s.user_emails == {} and s.notify_addresses == {}  # ignored, with a warning


def test_an_engine_without_settings_ignores_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BATON_CLOCK_OFFSET", "BATON_SMTP_HOST", "BATON_PLAN_COMMITS", "BATON_FAULT"):
        monkeypatch.setenv(name, SAMPLES[name][0])
    url = f"sqlite:///{tmp_path / 'b.db'}"
    plain = Engine(url)
    try:
        worker = Worker(plain)
        assert plain.settings == Settings()
        assert plain.clock.offset == timedelta(0)  # type: ignore[attr-defined]
        assert plain.applier.notify_assignments is False
        assert worker.plan_commits is True and worker._faults.point == ""
    finally:
        plain.close()
    read = Engine(url, settings=Settings.from_environment())  # what the baton command does
    try:
        worker = Worker(read)
        assert read.clock.offset == timedelta(hours=2)  # type: ignore[attr-defined]
        assert read.applier.notify_assignments is True
        assert worker.plan_commits is False and worker._faults.point == "after_flow"
        assert read.settings.smtp == SmtpSettings(host="mail")
    finally:
        read.close()


def test_the_database_setting_beats_baton_toml(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    project = Project(tmp_path / "proj", "sqlite:///proj.db", ())
    assert project.database_url() == f"sqlite:///{tmp_path / 'proj' / 'proj.db'}"
    assert project.database_url("here.db") == f"sqlite:///{tmp_path / 'here.db'}"
    assert project.database_url("postgresql://h/d") == "postgresql://h/d"


def test_baton_toml_sets_isolation_and_the_environment_beats_it(tmp_path: Path) -> None:
    (tmp_path / "baton.toml").write_text('isolation = "process"\nflow_memory_mb = 300\n')
    project = load_project(tmp_path)
    assert project.settings == {"isolation": "process", "flow_memory_mb": 300}
    s = Settings.from_environment({}, project=project.settings)
    assert (s.isolation, s.flow_memory_mb) == ("process", 300)
    s = Settings.from_environment({"BATON_ISOLATION": "thread", "BATON_FLOW_MEMORY_MB": "64"},
                                  project=project.settings)
    assert (s.isolation, s.flow_memory_mb) == ("thread", 64)
    (tmp_path / "baton.toml").write_text('isolation = "fork"\n')
    with pytest.raises(ConfigError, match="isolation='fork'"):
        Settings.from_environment({}, project=load_project(tmp_path).settings)


def test_baton_toml_ai_table_names_the_provider(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "baton.toml").write_text('[ai]\nprovider = "offline"\n')
    project = load_project(tmp_path)
    assert Settings.from_environment({}, project=project.settings).ai_provider == "offline"
    (tmp_path / "baton.toml").write_text('[ai]\nprovider = "gpt"\n')
    with pytest.raises(ConfigError,
                       match="\\[ai\\] provider='gpt' is not one of anthropic, offline, openai"):
        Settings.from_environment({}, project=load_project(tmp_path).settings)
    (tmp_path / "baton.toml").write_text('[ai]\nmodel_name = "x"\n')
    with pytest.raises(ConfigError, match="unknown key\\(s\\) in \\[ai\\]: model_name "
                                          "\\(known: provider, connection, model, encoder, "
                                          "encoder_few\\)"):
        Settings.from_environment({}, project=load_project(tmp_path).settings)
    (tmp_path / "baton.toml").write_text(
        '[ai]\nprovider = "openai"\nconnection = "llm"\nmodel = "gpt-4o-mini"\n')
    s = Settings.from_environment({}, project=load_project(tmp_path).settings)
    assert (s.ai_provider, s.ai_connection, s.ai_model) == ("openai", "llm", "gpt-4o-mini")
    s = Settings.from_environment({"BATON_AI_MODEL": "other"},
                                  project=load_project(tmp_path).settings)
    assert s.ai_model == "other"
    (tmp_path / "baton.toml").write_text('[ai]\nconnection = 7\n')
    with pytest.raises(ConfigError, match="\\[ai\\] connection=7 must be a name"):
        Settings.from_environment({}, project=load_project(tmp_path).settings)
    (tmp_path / "baton.toml").write_text('[ai]\nencoder = 7\n')
    with pytest.raises(ConfigError, match="\\[ai\\] encoder=7 must be auto, off or the "
                                          "directory of a sentence-transformers model"):
        Settings.from_environment({}, project=load_project(tmp_path).settings)
    (tmp_path / "baton.toml").write_text('[ai]\nencoder = "/srv/models/mini"\n')
    s = Settings.from_environment({}, project=load_project(tmp_path).settings)
    assert s.ai_encoder == "/srv/models/mini"
    assert Settings.from_environment({"BATON_AI_ENCODER": "Off"},
                                     project=load_project(tmp_path).settings).ai_encoder == "off"
    assert Settings.from_environment({}, project=load_project(tmp_path).settings
                                     ).ai_encoder_few is False  # the default
    (tmp_path / "baton.toml").write_text('[ai]\nencoder_few = true\n')
    assert Settings.from_environment({}, project=load_project(tmp_path).settings
                                     ).ai_encoder_few is True
    assert Settings.from_environment({"BATON_AI_ENCODER_FEW": "0"},
                                     project=load_project(tmp_path).settings
                                     ).ai_encoder_few is False
    with pytest.raises(ConfigError, match="BATON_AI_ENCODER_FEW='maybe' is not 1 or 0"):
        Settings.from_environment({"BATON_AI_ENCODER_FEW": "maybe"})
    (tmp_path / "baton.toml").write_text('[ai]\nencoder_few = "yes"\n')
    with pytest.raises(ConfigError, match="\\[ai\\] encoder_few='yes' must be true or false"):
        Settings.from_environment({}, project=load_project(tmp_path).settings)
    # A relative model folder is the project's, wherever the command runs from.
    (tmp_path / "baton.toml").write_text('[ai]\nencoder = "models/mini"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = Settings.from_environment({}, project=load_project(tmp_path).settings)
    assert s.ai_encoder == str((tmp_path / "models" / "mini").resolve())
    assert Settings.from_environment({}, project=load_project(tmp_path).settings
                                     ).ai_encoder == s.ai_encoder
    (tmp_path / "baton.toml").write_text('[ai]\nencoder = " AUTO "\n')
    assert Settings.from_environment({}, project=load_project(tmp_path).settings
                                     ).ai_encoder == "auto"
