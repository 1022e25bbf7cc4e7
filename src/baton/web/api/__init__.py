"""The REST API, mounted at ``/api``: one module per area, each operation with its
permission, response model and the problem documents it can answer with."""

from fastapi import APIRouter, Depends

from baton.web.api import definitions, fallout, incidents, people, records, runs, work
from baton.web.api.common import clean_input

router = APIRouter(dependencies=[Depends(clean_input)])
for module in (people, definitions, records, runs, work, fallout, incidents):
    router.include_router(module.router)

__all__ = ["router"]
