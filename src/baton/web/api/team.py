"""The Team: people's routing profiles (availability, capacity, skills, working-hours
calendar, load) and per queue the supervisor's figures. Supervising needs the ``team``
permission (the operator role); anyone may read their own profile and set their own
availability (an agent going away, or a presence system acting with their token)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from baton.auth.directory import NAME_PATTERN
from baton.auth.roles import Permission, require
from baton.definitions.routing import SKILL_PATTERN
from baton.web.api.common import RequestBody, not_null, refuse_null
from baton.web.problems import problem_responses
from baton.web.security import Principal, current_principal, engine_of, need
from baton.work.team import MAX_CAPACITY, UNSET, ProfileChange

router = APIRouter(tags=["Team"])

TEAM = Depends(need(Permission.TEAM))
ME = Depends(current_principal)
UserName = Annotated[str, Path(min_length=1, max_length=200)]
SkillName = Annotated[str, Field(min_length=1, max_length=100, pattern=SKILL_PATTERN)]
QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
Level = Annotated[int, Field(ge=1, le=5)]
Availability = Literal["available", "away", "offline"]
# Declared with propertyNames (pydantic would write patternProperties, which lets any other
# name through in the document): a client learns the names a skill may have.
Skills = Annotated[dict[SkillName, Level | None], WithJsonSchema({
    "type": "object", "maxProperties": 200,
    "propertyNames": {"pattern": SKILL_PATTERN, "minLength": 1, "maxLength": 100},
    "additionalProperties": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 5},
                                       {"type": "null"}]}})]


class ProfileOut(BaseModel):
    name: str
    display_name: str
    availability: Availability
    capacity: int | None = Field(description="most open routed items; null: no limit")
    queue_capacity: dict[str, int | None]
    skills: dict[str, int | None] = Field(description="skill -> level 1-5 (null: no level)")
    calendar: str | None
    load: int = Field(description="open items routing gave them")
    queue_load: dict[str, int]
    queues: list[str]
    groups: list[str]
    idle_since: str | None
    active: bool = Field(description="false: deactivated (routing gives them nothing, they "
                                     "cannot sign in), whatever their availability says")
    may_work: bool = Field(description="do their roles let them work items (the `work` "
                                       "permission)? false: a designer, never routed an item")


class QueueFigures(BaseModel):
    queue: str
    waiting: int
    oldest_wait_s: float | None
    routed_last_hour: int
    median_to_assignment_s: float | None


class TeamOut(BaseModel):
    people: list[ProfileOut]
    queues: list[QueueFigures]


class ProfilePatch(RequestBody):
    """A JSON merge patch: a field left out keeps its value; null clears `capacity` and
    `calendar`; the other fields take no null (a 422 naming the field, never ignored)."""

    availability: Availability | None = Field(default=None, json_schema_extra=not_null)
    capacity: int | None = Field(default=None, ge=0, le=MAX_CAPACITY,
                                 description="null: no limit (send it to clear one)")
    queue_capacity: Annotated[
        dict[QueueName, Annotated[int, Field(ge=0, le=MAX_CAPACITY)] | None],
        WithJsonSchema({"type": "object", "maxProperties": 100,
                        "propertyNames": {"pattern": NAME_PATTERN, "minLength": 1,
                                          "maxLength": 200},
                        "additionalProperties": {"anyOf": [
                            {"type": "integer", "minimum": 0, "maximum": 100_000},
                            {"type": "null"}]}})] | None = Field(
        default=None, max_length=100, description="queue or group -> capacity there",
        json_schema_extra=not_null)
    add_skills: Skills | None = Field(default=None, max_length=200, json_schema_extra=not_null)
    remove_skills: list[SkillName] | None = Field(default=None, max_length=200,
                                                  json_schema_extra=not_null)
    skills: Skills | None = Field(default=None, max_length=200, json_schema_extra=not_null,
                                  description="all of them (replaces the list; {}: none)")
    calendar: str | None = Field(default=None, min_length=1, max_length=200,
                                 description="a deployed calendar's name; null: none")

    _not_null = field_validator("availability", "queue_capacity", "add_skills", "remove_skills",
                                "skills", mode="before")(refuse_null)


@router.get("/team", response_model=TeamOut, summary="The team and its queues",
            description="Every person's routing profile (availability, load against "
                        "capacity, skills) and, per queue or group that routes, the items "
                        "waiting, the oldest wait, items routed in the last hour and the "
                        "median seconds from creation to assignment.",
            responses=problem_responses(401, 403))
def get_team(request: Request, _: Principal = TEAM) -> dict[str, Any]:
    team = engine_of(request).team
    return {"people": [p.to_json() for p in team.everyone()], "queues": team.figures()}


@router.get("/users/{name}/routing", response_model=ProfileOut,
            summary="A person's routing profile",
            description="Your own, or anyone's with the `team` permission.",
            responses=problem_responses(401, 403, 404, 422))
def get_routing_profile(request: Request, name: UserName,
                        principal: Principal = ME) -> dict[str, Any]:
    if name != principal.name:
        require(principal.user, Permission.TEAM)
    return engine_of(request).team.get(name).to_json()


@router.patch("/users/{name}/routing", response_model=ProfileOut,
              summary="Change a person's routing profile",
              description="Only the fields sent change. Anyone may set their own "
                          "`availability`; everything else, and other people's, needs the "
                          "`team` permission. What waits in their queues is routed at once.",
              responses=problem_responses(400, 401, 403, 404, 422))
def update_routing_profile(request: Request, name: UserName, body: ProfilePatch,
                           principal: Principal = ME) -> dict[str, Any]:
    sent = body.model_fields_set
    if name != principal.name or sent - {"availability"}:
        require(principal.user, Permission.TEAM)
    change = ProfileChange(
        availability=body.availability,
        capacity=body.capacity if "capacity" in sent else UNSET,
        queue_capacity=body.queue_capacity, add_skills=body.add_skills,
        remove_skills=tuple(body.remove_skills or ()), skills=body.skills,
        calendar=body.calendar if "calendar" in sent else UNSET)
    return engine_of(request).team.update(name, change, principal.name).to_json()
