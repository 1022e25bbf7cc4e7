"""Definitions that validated and then broke at run time are refused by validation,
located: values that are not JSON, defaults that break their own field's rules, durations
no date can hold, calendars without working time, URLs that do not parse, crons that
never come, inputs nobody declared, conditions that are not true or false, names
expressions cannot read, and paths that hold no definition. And what an older stored
definition still holding one does at run time: a handled failure, never an exception."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from baton.calendars import HORIZON, BusinessCalendar, add_business_time
from baton.clock import iso
from baton.definitions.loader import build, check_definitions, check_texts, parse_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import decide
from baton.engine.events import RunStarted
from baton.engine.policy import MAX_DURATION, RetryPolicy, duration
from baton.engine.state import Run
from baton.engine.status import StepStatus
from baton.errors import Issue
from baton.runtime.schedules import ScheduleError, next_tick

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

TICKET = """\
kind: object
name: Ticket
fields:
  subject: {type: string}
"""


def issues(text: str, name: str = "t.yaml") -> list[Issue]:
    """Every error of ``text`` validated alone (with a Ticket object type)."""
    return check_texts({"ticket.yaml": TICKET, name: textwrap.dedent(text)})[1]


def found(text: str) -> dict[str, str]:
    """``path -> message`` of each error of ``text``."""
    return {i.path: i.message for i in issues(text)}


def orch(*, trigger: str = "{type: record, object: Ticket, on: [create]}", steps: str = "",
         stage: str = "", top: str = "") -> str:
    """An orchestration with one stage ``s``; ``steps`` are its steps' flow mappings."""
    body = steps or "      - {name: a, type: background, flow: qa.noop}\n"
    return (f"kind: orchestration\nname: o\ntrigger: {trigger}\n{top}stages:\n"
            f"  - name: s\n{stage}    steps:\n{body}")


# ---- 1. values that are not JSON -----------------------------------------------------------

def test_variables_that_are_not_json_values_are_refused_where_they_are() -> None:
    text = orch(top="variables:\n  blob: !!binary aGVsbG8=\n  day: !!timestamp 2026-01-01\n"
                    "  n: .nan\n  big: 99999999999999999999999\n  deep: {a: [1, -.inf]}\n"
                    "  fine: {text: '=not an expression', when: 2026-01-01, n: 1.5}\n")
    got = {i.path: (i.line, i.message) for i in issues(text)}
    assert got["variables.blob"][0] == 5 and "!!binary" in got["variables.blob"][1]
    assert "write it as text, '2026-01-01'" in got["variables.day"][1]
    assert got["variables.n"][1].startswith(".nan is not a number")
    assert "beyond 64 bits" in got["variables.big"][1]
    assert got["variables.deep.a[1]"][1].startswith("-.inf")
    assert not any(p.startswith("variables.fine") for p in got)  # a date typed plainly is text


def test_json_defaults_and_step_literals_that_are_not_json_are_refused() -> None:
    got = found("""\
        kind: object
        name: Odd
        fields:
          a: {type: json, default: !!binary aGVsbG8=}
          b: {type: json, default: {a: .nan}}
          c: {type: json, default: {x: [99999999999999999999]}}
        """)
    assert "!!binary" in got["fields.a.default"]
    assert ".nan is not a number" in got["fields.b.default.a"]
    assert "holds 99999999999999999999, a whole number beyond 64 bits" in got["fields.c.default"]
    got = found(orch(steps="      - {name: a, type: background, flow: qa.noop, "
                           "input: {x: .inf}}\n"))
    assert ".inf is not a number" in got["stages[0].steps[0].input.x"]


# ---- 6. defaults follow their field's rules ------------------------------------------------

def test_defaults_are_checked_against_their_fields_own_rules() -> None:
    got = found("""\
        kind: object
        name: Odd
        fields:
          n: {type: int, default: 99999999999999999999}
          s: {type: string, default: "a very long default", max_length: 3}
          l: {type: string, default: "two\\nlines"}
          t: {type: text, default: "abcdef", max_length: 5}
          j: {type: json, default: {a: "0123456789"}, max_length: 10}
          ok_int: {type: int, default: -9223372036854775808}
          ok_text: {type: text, default: "two\\nlines", max_length: 9}
          ok_dec: {type: decimal, precision: 38, scale: 0, default: 99999999999999999999}
        """)
    assert set(got) == {f"fields.{f}.default" for f in "nsltj"}, got
    assert "out of range" in got["fields.n.default"]
    assert got["fields.s.default"] == ("default 'a very long default' is too long: 19 "
                                       "characters, at most 3 (max_length)")
    assert got["fields.l.default"] == ("default 'two\\nlines' is not one line (use type text "
                                       "for several)")
    assert "at most 5" in got["fields.t.default"]
    assert "18 characters of JSON, at most 10" in got["fields.j.default"]


def test_a_default_beyond_the_default_max_length_and_form_and_input_defaults() -> None:
    got = found(orch(trigger="{type: autolaunched, input: {n: {type: int, "
                             "default: 18446744073709551616}}}",
                     steps=f"      - {{name: a, type: interactive, assign: {{queue: q}}, "
                           f"form: [{{name: s, type: string, default: {'x' * 1001}}}]}}\n"))
    assert "out of range" in got["trigger.input.n.default"]
    assert "1,001 characters, at most 1,000" in got["stages[0].steps[0].form[0].default"]


# ---- 2. durations ----------------------------------------------------------------------------

def test_durations_past_a_hundred_years_are_refused_everywhere() -> None:
    huge = "99999999999d"
    got = found(orch(steps=f"""\
      - {{name: p, type: pause, for: 3000000d}}
      - {{name: q, type: background, flow: qa.noop, timeout: {huge},
         retry: {{initial: {huge}, max_delay: {'9' * 5000}s}}}}
      - {{name: r, type: interactive, assign: {{queue: x}}, sla: {{duration: {huge}}}}}
      - {{name: longest, type: pause, for: 36500d}}
"""))
    step = "stages[0].steps"
    assert set(got) == {f"{step}[0].for", f"{step}[1].timeout", f"{step}[1].retry.initial",
                        f"{step}[1].retry.max_delay", f"{step}[2].sla.duration"}, got
    assert got[f"{step}[0].for"] == ("duration '3000000d' is too long: at most 36500d "
                                     "(100 years)")
    got = found(f"""\
        kind: connection
        name: c1
        type: http
        base_url: http://h.example
        timeout: {{read: {huge}}}
        ---
        kind: routing
        name: r1
        from: {{queue: q}}
        offer: {{timeout: {huge}}}
        """)
    assert set(got) == {"timeout.read", "offer.timeout"}


def test_a_duration_stored_before_the_bound_counts_as_the_bound() -> None:
    assert duration("99999999999d") == duration("3000000d") == MAX_DURATION
    assert duration(f"{'9' * 5000}s") == MAX_DURATION
    assert duration("36500d") == timedelta(days=36_500) == MAX_DURATION
    # doubling to the cap never overflows, whatever the retry count
    policy = RetryPolicy(max=1000, initial=timedelta(seconds=10))
    assert policy.delay(60, "k") == policy.delay(999, "k") == timedelta(minutes=10)
    assert RetryPolicy(max=10**6, initial=timedelta(0)).delay(10**6, "k") == timedelta(0)


def _stored(text: str) -> OrchestrationDefinition:
    """An orchestration as an older version stored it: built without today's checks."""
    docs, problems = parse_text(textwrap.dedent(text), "old.yaml")
    assert not problems
    (defn,) = [build(d).definition for d in docs if d.data["kind"] == "orchestration"]
    assert isinstance(defn, OrchestrationDefinition)
    return defn


def test_a_stored_pause_past_any_date_fails_its_step_and_not_the_worker() -> None:
    defn = _stored(orch(trigger="{type: autolaunched}", steps="""\
      - {name: p, type: pause, for: 3000000d}
      - {name: b, type: background, flow: qa.noop}
"""))
    run = Run(id="run-1", orchestration="o", version=1, record_id=None)
    d = decide(defn, run, RunStarted(), NOW, None)
    steps = d.run.steps
    assert steps["p"].status is StepStatus.FALLOUT and steps["b"].status is StepStatus.RUNNING
    assert steps["p"].error is not None
    assert steps["p"].error["type"] == "DurationError"
    assert "for: 3000000d is too long" in steps["p"].error["message"]


def test_a_stored_sla_or_timeout_past_the_bound_starts_its_step() -> None:
    defn = _stored(orch(trigger="{type: autolaunched}", steps="""\
      - {name: r, type: interactive, assign: {queue: x}, sla: {duration: 99999999999d}}
      - {name: b, type: background, flow: qa.noop, timeout: 99999999999d}
"""))
    d = decide(defn, Run(id="run-1", orchestration="o", version=1, record_id=None), RunStarted(), NOW, None)
    r = d.run.steps["r"]
    assert r.status is StepStatus.WAITING_FOR_PERSON and r.sla is not None
    assert r.sla["due_at"] == iso(NOW + MAX_DURATION)  # (100 years: never, in practice)


# ---- 3. calendars ----------------------------------------------------------------------------

@pytest.mark.parametrize("hours", ["{}", "{mon: [], sat: []}"])
def test_a_calendar_without_any_working_hours_is_refused(hours: str) -> None:
    got = found(f"kind: calendar\nname: never\ntimezone: UTC\nhours: {hours}\n")
    assert list(got) == ["hours"]
    assert got["hours"].startswith("a calendar needs working hours on at least one day")


def _calendar(hours: dict[str, list[str]]) -> BusinessCalendar:
    return BusinessCalendar.from_spec("c", {"timezone": "UTC", "hours": hours})


def test_business_time_that_does_not_fit_the_horizon_is_due_at_its_end() -> None:
    weekly_hour = _calendar({"mon": ["09:00-10:00"]})
    # 200 days of business time in one hour a week: 4,800 Mondays, about 92 years
    due = add_business_time(weekly_hour, NOW, timedelta(days=200))
    assert due.year == 2117 and due.weekday() == 0 and (due.hour, due.minute) == (10, 0)
    assert add_business_time(weekly_hour, NOW, timedelta(days=36_500)) == NOW + HORIZON
    never = _calendar({})  # (deployed before validation refused it)
    assert add_business_time(never, NOW, timedelta(hours=4)) == NOW + HORIZON
    late = datetime(9999, 12, 1, tzinfo=UTC)
    assert add_business_time(weekly_hour, late, timedelta(days=200)).year == 9999


def test_an_sla_in_a_calendar_that_cannot_give_it_starts_its_step() -> None:
    defn = _stored(orch(trigger="{type: autolaunched}", steps="""\
      - {name: r, type: interactive, assign: {queue: x},
         sla: {duration: 4h, jeopardy: 1h, calendar: never}}
      - {name: w, type: interactive, assign: {queue: x}, sla: {duration: 200d, calendar: weekly}}
"""))
    defn = dataclasses.replace(defn, calendars=MappingProxyType({
        "never": _calendar({}), "weekly": _calendar({"mon": ["09:00-10:00"]})}))
    d = decide(defn, Run(id="run-1", orchestration="o", version=1, record_id=None), RunStarted(), NOW, None)
    r, w = d.run.steps["r"], d.run.steps["w"]
    assert r.status is StepStatus.WAITING_FOR_PERSON and r.sla is not None
    assert r.sla["due_at"] == r.sla["jeopardy_at"] == iso(NOW + HORIZON)
    assert w.sla is not None and w.sla["due_at"].startswith("2117-")


# ---- 4. URLs ---------------------------------------------------------------------------------

def test_urls_that_do_not_parse_or_name_no_port_are_refused_not_raised() -> None:
    got = found("""\
        kind: connection
        name: c2
        type: http
        base_url: "http://[::1"
        ---
        kind: connection
        name: c3
        type: http
        base_url: "http://h:99999/x"
        auth: {type: oauth2_client_credentials, token_url: "https://[x", client_id: a,
               client_secret: env:X}
        ---
        kind: connection
        name: c4
        type: mcp
        transport: http
        url: "https://[x"
        """)
    assert got["base_url"].startswith("not a valid URL (")  # (both documents say base_url)
    assert got["url"] == got["auth.token_url"] == ("not a valid URL (Invalid IPv6 URL), "
                                                   "expected one like https://bank.example/api")
    (issue,) = issues("""\
        kind: connection
        name: c2
        type: http
        base_url: "http://[::1"
        """)
    assert (issue.line, issue.path) == (4, "base_url")
    assert issue.message.startswith("not a valid URL (Invalid IPv6 URL)")


def test_each_bad_url_is_reported_in_its_own_document() -> None:
    text = textwrap.dedent("""\
        kind: connection
        name: c3
        type: http
        base_url: "http://h:99999/x"
        ---
        kind: connection
        name: c5
        type: http
        base_url: "http://h:0/x"
        ---
        kind: connection
        name: c6
        type: http
        base_url: "http://h.example:8443/x"
        """)
    got = [(i.line, i.message) for i in check_texts({"c.yaml": text})[1]]
    assert got == [(4, ("not a valid URL (Port out of range 0-65535), expected one like "
                        "https://bank.example/api")),
                   (9, "port 0 is not a port a server listens on (1 to 65535)")]


# ---- 5. cron -----------------------------------------------------------------------------

def test_a_cron_that_never_comes_is_refused_and_never_armed() -> None:
    got = found(orch(trigger='{type: schedule, cron: "0 0 31 2 *"}'))
    assert got == {"trigger.cron": "'0 0 31 2 *' never comes: no date has that day in those "
                                   "months (e.g. day 31 of February)"}
    assert found(orch(trigger='{type: schedule, cron: "0 0 29 2 *"}')) == {}
    with pytest.raises(ScheduleError, match="has no tick after"):
        next_tick("0 0 31 2 *", "UTC", NOW)
    assert next_tick("0 0 29 2 *", "Europe/Paris", NOW).year == 2028


# ---- 7. input ------------------------------------------------------------------------------

def test_input_nobody_declared_is_an_unknown_input() -> None:
    message = "unknown input 'x': the trigger declares no input"
    got = found(orch(trigger="{type: record, object: Ticket, on: [create], "
                             "when: '=input.x == 1'}"))
    assert got == {"trigger.when": message}
    got = found(orch(trigger="{type: autolaunched}", stage="    exit_when: '=true'\n",
                     steps="      - {name: a, type: background, flow: qa.noop, "
                           "when: '=input.x == 1'}\n"))
    assert got == {"stages[0].steps[0].when": message}
    got = found(orch(trigger='{type: schedule, cron: "0 7 * * *"}',
                     steps="      - {name: a, type: background, flow: qa.noop, "
                           "input: {v: '=input.x'}}\n"))
    assert got == {"stages[0].steps[0].input.v": message}
    declared = "{type: autolaunched, input: {amount: {type: int}}}"
    assert found(orch(trigger=declared, stage="    exit_when: '=input.amount == 1'\n")) == {}
    got = found(orch(trigger=declared, stage="    exit_when: '=input.amout == 1'\n"))
    assert got == {"stages[0].exit_when": "unknown input 'amout' (did you mean 'amount'?)"}


# ---- 8. conditions -------------------------------------------------------------------------

def test_conditions_whose_type_is_known_and_not_bool_are_refused() -> None:
    got = found(orch(
        trigger="{type: record, object: Ticket, on: [create], when: '=record.subject + \"!\"'}",
        stage="    exit_when: '=1'\n    next: [{when: '=\"yes\"', goto: end}, {goto: end}]\n",
        steps="""\
      - {name: a, type: background, flow: qa.noop, when: '="str"'}
      - {name: b, type: interactive, assign: {queue: q}, complete_when: '=[true]'}
      - {name: p, type: pause, until: '=size(record.subject)'}
      - {name: ok1, type: background, flow: qa.noop, when: '=record.subject'}
      - {name: ok2, type: background, flow: qa.noop, when: '=size(record.subject) > 1'}
      - {name: ok3, type: background, flow: qa.noop, when: true}
"""))
    gives = {p: m.removeprefix("a condition must give true or false, and this gives ")
             for p, m in got.items() if "warning" not in m}
    assert gives == {"trigger.when": "a string", "stages[0].exit_when": "a number",
                     "stages[0].next[0].when": "a string",
                     "stages[0].steps[0].when": "a string",
                     "stages[0].steps[1].complete_when": "a list",
                     "stages[0].steps[2].until": "a number"}


# ---- 9. names, after, paths ----------------------------------------------------------------

def test_names_expressions_cannot_read_are_refused() -> None:
    got = found("""\
        kind: orchestration
        name: o
        trigger: {type: autolaunched, input: {"false": {type: int}}}
        variables: {"null": 1}
        stages:
          - name: "true"
            steps:
              - {name: in, type: background, flow: qa.noop}
              - {name: b, type: background, flow: qa.noop}
              - {name: c, type: background, flow: qa.noop, after: [b, b]}
        """)
    assert got == {
        "trigger.input.false": "field name 'false' is a reserved word in expressions "
                               "(false, in, null, true): choose another name",
        "variables.null": "variable name 'null' is a reserved word in expressions "
                          "(false, in, null, true): choose another name",
        "stages[0].name": "stage name 'true' is a reserved word in expressions "
                          "(false, in, null, true): choose another name",
        "stages[0].steps[0].name": "step name 'in' is a reserved word in expressions "
                                   "(false, in, null, true): choose another name",
    }
    warnings: list[Issue] = []
    check_texts({"t.yaml": orch(steps="""\
      - {name: b, type: background, flow: qa.noop}
      - {name: c, type: background, flow: qa.noop, after: [b, b]}
""")}, warnings=warnings)
    assert [(w.line, w.path, w.message) for w in warnings] == [
        (8, "stages[0].steps[1].after[1]",
         "step 'b' is named twice in after: did you mean another step?")]


def test_paths_that_hold_no_definition_say_so(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing yet\n---\n")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.yaml").write_text("\n")
    (tmp_path / "some").mkdir()
    (tmp_path / "some" / "a.yaml").write_text("\n")  # an empty file beside a definition
    (tmp_path / "some" / "b.yaml").write_text(TICKET)
    paths = [tmp_path / n for n in ("empty.yaml", "comments.yaml", "nothing", "blank", "some")]
    _, got = check_definitions(paths)
    assert [(Path(i.file).name, i.line, i.message) for i in got] == [
        ("blank", 0, "no definitions found: its .yaml files are empty or hold only comments"),
        ("comments.yaml", 0, "no definitions found: the file is empty or holds only comments"),
        ("empty.yaml", 0, "no definitions found: the file is empty or holds only comments"),
        ("nothing", 0, "no definitions found: the folder has no .yaml or .yml file"),
    ]


def test_a_path_that_is_no_file_nor_folder_is_named_for_what_it_is(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    paths: list[Any] = [os.devnull, fifo, tmp_path / "missing.yaml"]
    _, got = check_definitions(paths)
    odd = "not a regular file or a folder (a device, a pipe or a socket): nothing to read"
    assert {(Path(i.file).name, i.message) for i in got} == {
        ("null", odd), ("pipe.yaml", odd), ("missing.yaml", "no such file or directory")}


# ---- the loader: a tag that cannot read its value ---------------------------------------------

@pytest.mark.parametrize("value, reason", [
    ("!!int abc", "the value cannot be read as !!int: invalid literal"),
    ("!!timestamp 2026-13-45", "the value cannot be read as !!timestamp: month must be"),
    ("1" * 5000, "the value cannot be read as !!int: Exceeds the limit (4300 digits)"),
    ("!!bool maybe", "the value cannot be read as !!bool: maybe"),
])
def test_a_value_its_tag_cannot_read_is_a_located_yaml_error(value: str, reason: str) -> None:
    (issue,) = issues(orch(top=f"variables:\n  v: {value}\n"))
    assert issue.line == 5 and issue.message.startswith(f"invalid YAML: {reason}"), issue



def test_a_stored_definition_a_newer_check_refuses_is_still_used(tmp_path: Path,
                                                                 caplog: Any) -> None:
    """A version deployed by an older release and refused by a check added since (here: a
    step named ``null``, which expressions cannot read) is read back and used, with a
    warning naming it: a stricter release must not make every record write fail on an
    upgraded database (record triggers read every active orchestration)."""
    import logging
    import sqlite3

    from baton.runtime.engine import Engine

    (tmp_path / "t.yaml").write_text(TICKET + textwrap.dedent("""\
        ---
        kind: orchestration
        name: on_ticket
        trigger: {type: record, object: Ticket, on: [create]}
        stages:
          - name: s1
            steps: [{name: hold, type: pause, for: 1h}]
        """))
    url = f"sqlite:///{tmp_path / 'b.db'}"
    engine = Engine(url)
    try:
        engine.deploy([tmp_path / "t.yaml"], actor="t")
    finally:
        engine.close()
    with sqlite3.connect(tmp_path / "b.db") as conn:  # as an older release let it be deployed
        conn.execute("UPDATE baton_definitions SET source = replace(source, ?, ?) "
                     "WHERE name = 'on_ticket'", ("name: hold", "name: 'null'"))
    engine = Engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="baton.runtime.definitions"):
            rec = engine.create_record("Ticket", {"subject": "still works"}, actor="t")
        (run,) = engine.list_runs(record_id=rec["id"])
        assert "null" in run.steps
        assert any("on_ticket v1, as deployed, no longer passes validation" in r.getMessage()
                   for r in caplog.records), caplog.text
    finally:
        engine.close()
