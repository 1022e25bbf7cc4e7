"""HTTP faces of Baton: the REST API (``/api``, OpenAPI at ``/openapi.json``) and the web UI."""

from baton.web.app import create_app

__all__ = ["create_app"]
