"""Schemathesis against the app's own ``/openapi.json``: every operation, positive and
negative (invalid) inputs, a bounded number of examples each, derandomized.

The app runs over a seeded SQLite database (case_triage deployed, records, runs at their
triage work items, a run in fallout) and the fuzzer is an admin with a real API token, so
every operation is reachable. Checks: no 5xx, responses (problem documents included)
match the declared schema, status codes and content types are among those declared.
A summary line (operations, generated requests, failures) is printed at the end of the
session (``pytest_terminal_summary`` in this folder's conftest) and written to
``test-output/schemathesis-summary.txt`` with any failures.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from baton.clock import VirtualClock
from tests.api.conftest import FLAKY, Api
from tests.conftest import REPO

MAX_EXAMPLES = 20
FUZZ_ADMIN = "fuzz-admin-q7"  # a name the fuzzer will not guess to deactivate it

STATS: dict[str, Any] = {"operations": set(), "requests": 0, "failures": [],
                         "statuses": {}, "lock": threading.Lock()}


# The schema is read from the app at import (collection) time, so the app exists before the
# fixtures run; ``fuzz_api`` seeds its database once for the module and closes it after.
_TMP = Path(tempfile.mkdtemp(prefix="baton-fuzz-"))
_API = Api(f"sqlite:///{_TMP / 'baton.db'}", VirtualClock())
atexit.register(shutil.rmtree, _TMP, True)  # the summary is printed; the folder can go
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", _API.app,
    config=schemathesis.Config.from_dict({"generation": {"deterministic": True}}))


@pytest.fixture(scope="module")
def fuzz_api() -> Iterator[Api]:
    api = _API
    api.engine.directory.add_user(FUZZ_ADMIN, roles=["admin"])
    api.tokens[FUZZ_ADMIN] = api.engine.directory.create_token(FUZZ_ADMIN, "fuzz")[1]
    api.post(FUZZ_ADMIN, "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    for i, subject in enumerate(["Invoice 1 wrong", "Inverter down", "Invoice 3", "Panel"]):
        api.post(FUZZ_ADMIN, "/api/objects/Case/records", {"data": {"subject": subject, "number": i}})
    api.post(FUZZ_ADMIN, "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}})
    api.work()
    STATS["out"] = REPO / "test-output" / "schemathesis-summary.txt"
    yield api
    api.close()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, fuzz_api: Api) -> None:
    label = case.operation.label
    response = case.call(headers=fuzz_api.auth(FUZZ_ADMIN))
    with STATS["lock"]:
        STATS["operations"].add(label)
        STATS["requests"] += 1
        codes = STATS["statuses"]
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
    try:
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                 status_code_conformance,
                                                 content_type_conformance])
    except BaseException as exc:
        with STATS["lock"]:
            STATS["failures"].append(f"{label}: {str(exc).splitlines()[0][:200]}")
        raise


def summary_line() -> str | None:
    if not STATS["operations"]:
        return None
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(STATS["statuses"].items()))
    failures = len(STATS["failures"])
    return (f"schemathesis: {len(STATS['operations'])} operations, {STATS['requests']} requests "
            f"(max {MAX_EXAMPLES} examples per operation and mode, positive + negative), "
            f"{failures} failure{'s' if failures != 1 else ''}; status codes {{{codes}}}")


def write_summary() -> str | None:
    line = summary_line()
    out: Path | None = STATS.get("out")
    if line and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n" + "\n".join(STATS["failures"]) + "\n")
    return line
