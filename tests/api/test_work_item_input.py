"""An interactive step's ``input`` (issue 18 item 2) reaches the person: the work item
carries it through the API, and its page shows it above the form, on both databases."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.test_run_page_actions import login

REVIEW = """
kind: orchestration
name: reviewed
trigger: {type: autolaunched, input: {amount: {type: int, required: true}}}
stages:
  - name: only
    steps:
      - name: review
        type: interactive
        assign: {user: ann}
        input: {amount: '=input.amount', level: '=input.amount > 1000 ? "senior" : "junior"',
                note: 'ask finance <first>'}
        form: [{name: ok, type: bool}]
      - {name: plain, type: interactive, assign: {user: ann}}
"""


def test_the_work_item_carries_its_steps_input(api: Api) -> None:
    r = api.post("root", "/api/definitions/deploy", {"files": {"reviewed.yaml": REVIEW}})
    assert r.status_code == 200, r.text
    run_id = api.post("opal", "/api/runs", {"orchestration": "reviewed",
                                            "input": {"amount": 2500}}).json()["id"]
    api.work()
    items = {i["step"]: i for i in api.get("ann", "/api/work").json()["items"]
             if i["run_id"] == run_id}
    review = api.get("ann", f"/api/work/{items['review']['id']}").json()
    assert review["input"] == {"amount": 2500, "level": "senior", "note": "ask finance <first>"}
    assert items["plain"]["input"] is None
    login(api, "ann")
    page = api.client.get(f"/work/{review['id']}")
    assert page.status_code == 200
    assert 'id="input-h">Input</h2>' in page.text
    assert "senior" in page.text and "ask finance &lt;first&gt;" in page.text  # escaped
    plain = api.client.get(f"/work/{items['plain']['id']}")
    assert 'id="input-h"' not in plain.text
