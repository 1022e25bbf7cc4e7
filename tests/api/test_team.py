"""The Team API: people's routing profiles and the per-queue figures. Anyone reads their
own profile and sets their own availability; the rest needs the `team` permission (the
operator role supervises); bad values are problems naming the field."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import Api, assert_problem


def test_an_operator_supervises_and_an_agent_sets_only_their_own_availability(
        sqlite_api: Api) -> None:
    api = sqlite_api
    r = api.patch("opal", "/api/users/ann/routing",
                  {"capacity": 4, "add_skills": {"brand:ford": 3, "lang:pt": None},
                   "queue_capacity": {"tier1": 2}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["capacity"] == 4 and body["skills"] == {"brand:ford": 3, "lang:pt": None}
    assert body["queue_capacity"] == {"tier1": 2} and body["availability"] == "available"

    r = api.patch("ann", "/api/users/ann/routing", {"availability": "away"})
    assert r.status_code == 200 and r.json()["availability"] == "away"
    assert api.get("ann", "/api/users/ann/routing").json()["availability"] == "away"
    assert_problem(api.patch("ann", "/api/users/ann/routing", {"capacity": 99}), 403)
    assert_problem(api.patch("ann", "/api/users/bob/routing", {"availability": "away"}), 403)
    assert_problem(api.get("ann", "/api/users/bob/routing"), 403)
    assert_problem(api.get("ann", "/api/team"), 403)

    team = api.get("opal", "/api/team").json()
    ann = next(p for p in team["people"] if p["name"] == "ann")
    assert ann["availability"] == "away" and ann["load"] == 0
    assert team["queues"] == []


def test_bad_profile_values_are_named(sqlite_api: Api) -> None:
    api = sqlite_api
    assert_problem(api.patch("opal", "/api/users/ann/routing", {"availability": "asleep"}),
                   422, "availability")
    assert_problem(api.patch("opal", "/api/users/ann/routing",
                             {"add_skills": {"brand:ford": 9}}), 422)
    assert_problem(api.patch("opal", "/api/users/ann/routing", {"calendar": "nowhere"}),
                   422, "calendar")
    assert_problem(api.patch("opal", "/api/users/nobody/routing", {"capacity": 1}), 404)


def test_the_supervisor_figures_are_metrics(sqlite_api: Api) -> None:
    from tests.api.test_operations import samples
    from tests.api.test_work_offers import OFFERS, lead

    api = sqlite_api
    api.engine.deploy(texts={"routed.yaml": OFFERS.replace("offer: {timeout: 2m}\n", "")},
                      actor="setup")
    for name in ("ann", "cyd"):
        assert api.patch("opal", f"/api/users/{name}/routing", {"capacity": 1}).status_code == 200
    assert api.patch("cyd", "/api/users/cyd/routing", {"availability": "away"}).status_code == 200
    lead(api)
    api.clock.advance(timedelta(minutes=3))
    lead(api)  # ann is at capacity, cyd away: it waits
    api.clock.advance(timedelta(minutes=2))
    got = samples(api.get("opal", "/metrics").text)
    q = (("queue", "group:billing"),)
    assert got[("baton_routing_waiting", q)] == 1
    assert got[("baton_routing_oldest_wait_seconds", q)] == 120.0
    assert got[("baton_routing_routed_last_hour", q)] == 1
    assert got[("baton_routing_median_to_assignment_seconds", q)] == 0.0
    # People by availability, their loads and capacities added up: no person's name.
    people = api.get("opal", "/api/team").json()["people"]
    assert {p["name"]: (p["availability"], p["load"]) for p in people
            if p["name"] in ("ann", "cyd")} == {"ann": ("available", 1), "cyd": ("away", 0)}
    # (only people who may be routed work: active, their roles let them work items)
    agents = [p for p in people if p["active"] and p["may_work"]]
    assert {p["name"] for p in people} - {p["name"] for p in agents}  # (some are not)
    for availability in {p["availability"] for p in agents}:
        these = [p for p in agents if p["availability"] == availability]
        a = (("availability", availability),)
        assert got[("baton_agents", a)] == len(these)
        assert got[("baton_agent_load", a)] == sum(p["load"] for p in these)
        assert got[("baton_agent_capacity", a)] == sum(p["capacity"] or 0 for p in these)
    assert not [k for k in got if "user" in dict(k[1])], got
    figures = api.get("opal", "/api/team").json()["queues"]
    assert figures == [{"queue": "group:billing", "waiting": 1, "oldest_wait_s": 120.0,
                        "routed_last_hour": 1, "median_to_assignment_s": 0.0}]


def test_the_team_page_takes_the_capacities_the_api_takes(api: Api) -> None:
    """The page refuses what PATCH /api/users/NAME/routing refuses (0 to 100,000), naming
    the field; a number beyond 64 bits is that error too, not a 500."""
    from tests.api.test_work_guide import login

    csrf = login(api, "opal")
    for capacity in ("200000", "9223372036854775808", "-1"):
        r = api.client.post("/team", data={"name": "bob", "capacity": capacity,
                                           "csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 422 and "0 to 100,000" in r.text, (capacity, r.status_code)
    assert api.engine.team.get("bob").capacity is None  # nothing stored
    r = api.client.post("/team", data={"name": "bob", "availability": "away", "capacity": "abc",
                                       "skills": "lang:de, brand:ford=4", "csrf_token": csrf})
    assert r.status_code == 422  # the row shows what was sent, the bad field marked
    assert 'value="abc" aria-invalid="true"' in r.text and 'value="lang:de, brand:ford=4"' in r.text
    assert '<option value="away" selected>' in r.text
    assert r.headers["cache-control"] == "no-store"  # a signed-in page is not cached
    r = api.client.post("/team", data={"name": "bob", "capacity": "100000", "csrf_token": csrf},
                        follow_redirects=False)
    assert r.status_code == 303 and api.engine.team.get("bob").capacity == 100_000
    assert_problem(api.patch("opal", "/api/users/bob/routing", {"capacity": 100_001}), 422,
                   "capacity")
