"""The REST API, mounted at ``/api``."""

from fastapi import APIRouter

router = APIRouter()
