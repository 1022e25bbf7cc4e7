"""The secret scan (issue 12 item 1): runs call a real server on loopback over every auth
type (bearer, basic, api_key in a header and in the query, OAuth2 client credentials) and a
signed callback, with secrets from the environment and from a mode-0600 secrets file, one
call failing to fallout. Then no secret value (nor the OAuth2 token, nor the Basic pair)
appears in the database (SQLite: the file's bytes; PostgreSQL: every row of every table),
the audit events, the logs, the API's answers, the pages, the metrics, or the texts of
errors. Also what an operator sees of the calls: the run page, the Fallout page and
``baton runs show``."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from baton.runtime.callbacks import sign
from baton.store import schema
from tests.api.conftest import Api
from tests.api.test_run_page_actions import login
from tests.bank import Bank, Seen, bank_server

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "BEARER": "bearer-Zq81-secret",
    "BASIC_PW": "basic-Xy72-password",
    "KEY": "apikey-Wv63-secret",
    "CLIENT_SECRET": "client-Uu54-secret",
    "HMAC": "hmac-Tt45-secret",
}


def _definitions(url: str) -> str:
    conns = {
        "c_bearer": "auth: {type: bearer, secret: env:BEARER}",
        "c_basic": "auth: {type: basic, username: baton, password_secret: file:BASIC_PW}",
        "c_key": "auth: {type: api_key, secret: env:KEY}",
        "c_query": "auth: {type: api_key, secret: file:KEY, in: query, name: api_key}",
        "c_oauth": textwrap.dedent(f"""\
            auth:
              type: oauth2_client_credentials
              token_url: {url}/token
              client_id: baton
              client_secret: env:CLIENT_SECRET
            callback: {{hmac_secret: env:HMAC}}"""),
    }
    docs = [f"kind: connection\nname: {name}\ntype: http\nbase_url: {url}/api\n{extra}\n"
            for name, extra in conns.items()]
    docs.append(textwrap.dedent("""\
        kind: object
        name: Payee
        fields:
          iban: {type: string, required: true}
        """))
    simple = "".join(
        f"      - {{name: s_{n[2:]}, type: callout, connection: {n}, method: POST, "
        f"path: /{n[2:]}, body: {{iban: =record.iban}}}}\n"
        for n in ("c_bearer", "c_basic", "c_key"))
    docs.append(
        "kind: orchestration\nname: pay\ntrigger: {type: record, object: Payee}\n"
        "stages:\n  - name: only\n    steps:\n" + simple + textwrap.indent(textwrap.dedent("""\
            - {name: s_query, type: callout, connection: c_query, method: GET, path: /query,
               query: {iban: =record.iban}}
            - name: s_oauth
              type: callout
              connection: c_oauth
              method: POST
              path: /oauth
              body: {iban: =record.iban, reply_to: =callback.url}
              wait: callback
              output: {ack: =response.body.ackId, cb: =callback.body.status}
            - {name: s_fails, type: callout, connection: c_key, method: POST, path: /refuse,
               on_failure: fallout}
            """), " " * 6))
    return "---\n".join(docs)


def _check_auth(seen: Seen) -> bool:
    h, q = seen.headers, seen.query
    basic = base64.b64encode(f"baton:{SECRETS['BASIC_PW']}".encode()).decode()
    return {
        "/api/bearer": h.get("authorization") == f"Bearer {SECRETS['BEARER']}",
        "/api/basic": h.get("authorization") == f"Basic {basic}",
        "/api/key": h.get("x-api-key") == SECRETS["KEY"],
        "/api/refuse": h.get("x-api-key") == SECRETS["KEY"],
        "/api/query": q.get("api_key") == SECRETS["KEY"],
        "/api/oauth": h.get("authorization", "").startswith("Bearer tok-"),
    }.get(seen.path, False)


def _db_text(api: Api) -> str:
    """Everything the database holds, as text."""
    if api.backend == "sqlite":
        path = Path(api.db_url.removeprefix("sqlite:///"))
        blobs = [p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists()]
        return "\n".join(b.decode("latin-1") for b in blobs)
    out = []
    with api.engine.store.read() as tx:
        for table in schema.metadata.sorted_tables:
            for row in tx.conn.execute(text(f"SELECT * FROM {table.name}")):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_no_secret_is_stored_shown_logged_or_raised(api: Api, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(f'BASIC_PW = "{SECRETS["BASIC_PW"]}"\nKEY = "{SECRETS["KEY"]}"\n')
    os.chmod(secrets_file, 0o600)
    env = {k: v for k, v in SECRETS.items() if k not in ("BASIC_PW",)}
    api.engine.settings = replace(api.engine.settings, secrets_env=env,
                                  secrets_file=str(secrets_file),
                                  public_url="http://testserver")
    with bank_server(Bank(client_secret=SECRETS["CLIENT_SECRET"])) as bank:
        bank.check_auth = _check_auth
        bank.script["/api/refuse"] = [(403, {}, {"error": "not allowed"})]
        r = api.post("dee", "/api/definitions/deploy", {"files": {"pay.yaml": _definitions(bank.url)}})
        assert r.status_code == 200, r.text
        rec = api.engine.create_record("Payee", {"iban": "DE00 1234"})
        (run,) = api.engine.list_runs(record_id=rec["id"])
        api.work()
        reply = next(s for s in bank.requests if s.path == "/api/oauth").json()["reply_to"]
        body = json.dumps({"status": "done"}).encode()
        stamp = str(int(api.clock.now().timestamp()))
        cb = api.client.post(reply.removeprefix("http://testserver"), content=body, headers={
            "Content-Type": "application/json", "X-Timestamp": stamp,
            "X-Signature": sign(SECRETS["HMAC"], stamp, body)})
        assert cb.status_code == 200, cb.text
        api.work()
        steps = api.engine.get_run(run.id).steps
        assert {n: s.status.value for n, s in steps.items()} == {
            "s_bearer": "completed", "s_basic": "completed", "s_key": "completed",
            "s_query": "completed", "s_oauth": "completed", "s_fails": "fallout"}
        assert steps["s_oauth"].output["cb"] == "done"
        tokens = [t for t in bank.tokens]
        assert tokens  # the OAuth2 access token: a secret too
        # a missing secret fails with a message naming the reference only
        os.chmod(secrets_file, 0o644)
        rec2 = api.engine.create_record("Payee", {"iban": "DE00 5678"})
        api.work()
        (run2,) = api.engine.list_runs(record_id=rec2["id"])
        basic_err = api.engine.get_run(run2.id).steps["s_basic"].error
        assert "mode 0644" in basic_err["message"]

    forbidden = list(SECRETS.values()) + tokens + [
        base64.b64encode(f"baton:{SECRETS['BASIC_PW']}".encode()).decode(),
        base64.b64encode(f"baton:{SECRETS['CLIENT_SECRET']}".encode()).decode()]

    shown: dict[str, str] = {"database": _db_text(api), "logs": caplog.text}
    for path in (f"/api/runs/{run.id}", f"/api/runs/{run.id}/events", f"/api/runs/{run2.id}",
                 "/api/fallout", "/api/definitions?kind=connection",
                 "/api/definitions/connection/c_oauth/versions/1",
                 f"/api/records/{rec['id']}/timeline"):
        resp = api.get("root", path)
        assert resp.status_code == 200, (path, resp.text)
        shown[path] = resp.text
    login(api, "root")
    for path in (f"/runs/{run.id}", "/fallout", "/definitions/connection/c_oauth", "/metrics"):
        resp = api.client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        shown[path] = resp.text
    for name, where in shown.items():
        for secret in forbidden:
            assert secret not in where, f"a secret shows in {name}"

    # what an operator sees: every call, with the query credential redacted
    page = shown[f"/runs/{run.id}"]
    assert "Calls to other systems" in page and "api_key=***" in page
    assert re.search(r"POST .*/api/refuse</code> → <strong>403", page)
    assert "not allowed" in shown["/fallout"] and "Last call" in shown["/fallout"]
    assert "baton_callouts_total{connection=\"c_bearer\",status=\"200\"}" in shown["/metrics"] \
        or "baton_callouts_total{" in shown["/metrics"]

    # and baton runs show, as a process
    env_vars = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env_vars["PYTHONPATH"] = str(REPO / "src")
    out = subprocess.run([sys.executable, "-m", "baton.cli.main", "--db", api.db_url, "runs",
                          "show", run.id], capture_output=True, text=True, timeout=120,
                         env={**env_vars, "COLUMNS": "200"}, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    assert "Calls to other systems" in out.stdout and "403" in out.stdout
    assert "api_key=***" in out.stdout
    for secret in forbidden:
        assert secret not in out.stdout + out.stderr

