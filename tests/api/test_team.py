"""The Team API: people's routing profiles and the per-queue figures. Anyone reads their
own profile and sets their own availability; the rest needs the `team` permission (the
operator role supervises); bad values are problems naming the field."""

from __future__ import annotations

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
