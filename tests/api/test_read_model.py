"""The CLI's ``--json`` and the API print one read model (``baton.runtime.views``): a run
and a work item have the same fields, with the same values, in both."""

from __future__ import annotations

from baton.cli.output import run_detail as cli_run_detail
from baton.runtime.views import run_summary, work_item_view
from tests.api.conftest import Api


def test_a_run_and_a_work_item_have_the_same_fields_in_the_cli_and_the_api(api: Api) -> None:
    rec = api.new_case("Invoice 7 is wrong")
    item = api.item_of(rec["id"])

    over_http = api.get("opal", f"/api/work/{item['id']}").json()
    printed = work_item_view(api.engine.get_work_item(item["id"]))
    assert printed.keys() == over_http.keys()
    assert {k: v for k, v in printed.items() if k != "form"} == \
        {k: v for k, v in over_http.items() if k != "form"}
    assert [f["name"] for f in printed["form"]] == [f["name"] for f in over_http["form"]]

    run = api.engine.get_run(item["run_id"])
    over_http = api.get("opal", f"/api/runs/{run.id}").json()
    printed = cli_run_detail(api.engine, run)
    assert printed.keys() == over_http.keys()
    assert {k: printed[k] for k in run_summary(run)} == {k: over_http[k] for k in run_summary(run)}
    # The CLI lists the stages and steps the run reached, the API every one (in the same
    # order, the definition's); those both list are the same.
    reached = {s["name"] for s in printed["steps"]}
    assert reached and [s for s in over_http["steps"] if s["name"] in reached] == printed["steps"]
    assert [s for s in over_http["stages"] if s["status"] != "not_started"] == printed["stages"]
