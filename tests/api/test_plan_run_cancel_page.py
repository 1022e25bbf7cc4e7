"""The Monitor run page of a fulfillment plan's run: it offers the plan's cancel with its
point of no return instead of the plain "Cancel run" (the form cancels the plan: its
compensation run rolls back what its steps did), says when the order can no longer be
canceled (and refuses a cancel sent from a page drawn before), links the plan's
compensation run, whose page links the plan back and offers no cancel. Real Engine and
Worker behind the whole ASGI app, virtual time; a browser session with CSRF.

(Needs ``web/ui/monitor.py`` to pass ``plan`` — ``run_actions.plan_actions`` — to the run
page and ``action_forms``.)"""

from __future__ import annotations

import re

from baton.engine.status import RunStatus
from tests.api.conftest import Api
from tests.api.test_plan_run_cancel import _order, _past_ponr
from tests.api.test_run_page_actions import login


def _form_of(page: str, action: str) -> str | None:
    found = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page,
                      re.DOTALL)
    return found[0] if found else None


def test_the_run_page_of_a_plan_offers_the_plans_cancel(api: Api) -> None:
    order, run_id = _order(api, "ROUTER")
    csrf = login(api, "opal")
    page = api.client.get(f"/runs/{run_id}").text
    form = _form_of(page, f"/runs/{run_id}/cancel")
    assert form is not None and "Cancel the order&#39;s plan" in form, page
    assert "Point of no return: <strong>bill</strong> (not passed yet)" in form
    assert "Cancel run" not in page
    assert f"The fulfillment plan of order <a href=\"/records/{order}\">{order}</a>" in page
    r = api.client.post(f"/runs/{run_id}/cancel", data={"reason": "", "csrf_token": csrf})
    assert r.status_code == 422 and "reason is required" in r.text
    assert api.engine.get_run(run_id).status is RunStatus.IN_PROGRESS
    r = api.client.post(f"/runs/{run_id}/cancel",
                        data={"reason": "customer withdrew", "csrf_token": csrf},
                        follow_redirects=False)
    assert r.status_code == 303, r.text
    comp = api.get("opal", f"/api/plans/{order}").json()["compensation"]["run_id"]
    page = api.client.get(r.headers["location"]).text
    assert "Done: run canceled." in page
    assert f'compensation run <a href="/runs/{comp}">{comp}</a> rolls back' in page
    assert _form_of(page, f"/runs/{run_id}/cancel") is None
    # the compensation's page: linked to its plan, no cancel offered
    page = api.client.get(f"/runs/{comp}").text
    assert f'canceled plan (run <a href="/runs/{run_id}">{run_id}</a>)' in page
    assert _form_of(page, f"/runs/{comp}/cancel") is None
    assert "it is not canceled (its rollbacks would never run)" in page
    r = api.client.post(f"/runs/{comp}/cancel", data={"reason": "stop", "csrf_token": csrf})
    assert r.status_code == 409 and "is the compensation of order" in r.text
    assert api.engine.get_run(comp).status is RunStatus.IN_PROGRESS
    api.work()
    assert api.engine.get_run(comp).status is RunStatus.COMPLETED


def test_the_run_page_says_when_a_plan_can_no_longer_be_canceled(api: Api) -> None:
    _, run_id = _order(api, "ROUTER")
    _past_ponr(api, run_id)
    csrf = login(api, "opal")
    page = api.client.get(f"/runs/{run_id}").text
    assert _form_of(page, f"/runs/{run_id}/cancel") is None
    completed_at = api.engine.get_run(run_id).steps["bill"].completed_at
    shown = completed_at.replace("T", " ").partition(".")[0] + "Z"  # (the page's dates)
    assert ("The order can no longer be canceled: step <strong>bill</strong> is its point of "
            f"no return and completed at {shown}.") in page
    # a page drawn before the point of no return sends its cancel anyway: refused, said
    r = api.client.post(f"/runs/{run_id}/cancel", data={"reason": "late", "csrf_token": csrf})
    assert r.status_code == 409 and "is a point of no return" in r.text
    assert api.engine.get_run(run_id).status is RunStatus.IN_PROGRESS
    # the live refresh of a page showing the plan's cancel redraws its actions
    live = api.client.get(f"/runs/{run_id}/live", params={"actions": "cancel"}).text
    assert "can no longer be canceled" in live

