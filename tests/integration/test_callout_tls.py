"""TLS: a server on loopback with a certificate from a CA made at test time (openssl). The
callout fails without the CA (verify is on by default) and passes with ``tls.ca_file``,
relative to the project folder."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.bank import bank_server

ADDRESS = "kind: object\nname: Address\nfields:\n  customer: {type: string, required: true}\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=Baton Test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def _definitions(url: str, tls: str) -> str:
    return ADDRESS + "---\n" + textwrap.dedent(f"""\
        kind: connection
        name: bank
        type: http
        base_url: {url}
        """) + tls + textwrap.dedent("""\
        ---
        kind: orchestration
        name: send
        trigger: {type: record, object: Address}
        stages:
          - name: only
            steps:
              - {name: send, type: callout, connection: bank, method: POST, path: /x,
                 body: {c: =record.customer}}
        """)


def test_a_custom_ca_file_is_needed_and_enough(harness: Any, certs: Path) -> None:
    project = harness.tmp / "project"
    (project / "certs").mkdir(parents=True)
    shutil.copy(certs / "ca.pem", project / "certs" / "bank-ca.pem")
    harness.engine.settings = replace(harness.engine.settings, project_dir=str(project))
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certs / "server.pem", certs / "server.key")
    with bank_server(tls=server_tls) as bank:
        assert bank.url.startswith("https://localhost:")
        harness.deploy_text(_definitions(bank.url, ""))
        rec = harness.engine.create_record("Address", {"customer": "c1"})
        (run,) = harness.engine.list_runs(record_id=rec["id"])
        harness.work()
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "fallout"  # an unknown CA: not retried, nothing sent
        assert "certificate" in sr.error["message"].lower() or "TLS" in sr.error["message"]
        assert sr.error["retryable"] is False
        assert bank.requests == []

        harness.deploy_text(_definitions(bank.url, "tls: {ca_file: certs/bank-ca.pem}\n"))
        rec = harness.engine.create_record("Address", {"customer": "c2"})
        (run,) = harness.engine.list_runs(record_id=rec["id"])
        harness.work()
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "completed", sr.error
        assert [r.json() for r in bank.requests] == [{"c": "c2"}]
