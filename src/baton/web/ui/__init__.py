"""The web UI: server-rendered pages (Jinja2) with htmx."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
