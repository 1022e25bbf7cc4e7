"""The store on SQLAlchemy Core, for SQLite and PostgreSQL.

- :mod:`.statements`: the hot path's statements, built once, and their compiled form;
- :mod:`.tx`: :class:`SqlTx`, one transaction, with the repositories' methods
  (:mod:`baton.store.ports`) and :mod:`.people`'s;
- :mod:`.marks` and :mod:`.plan`: :class:`PlanTx`, a commit planned on a read snapshot,
  built from what each ``SqlTx`` method declares;
- :mod:`.dialects`: what differs between SQLite and PostgreSQL;
- :mod:`.jobs`: the job queue and the workers' registry;
- :mod:`.store`: :class:`SqlStore`, engines and transactions; :mod:`.env`, the options it
  reads from the environment when not given them.
"""

from sqlalchemy.exc import OperationalError

from baton.store.codec import json_dumps, json_loads
from baton.store.sql.dialects import SQLITE_SYNCHRONOUS
from baton.store.sql.jobs import worker_host
from baton.store.sql.plan import PlanAborted, PlanTx
from baton.store.sql.statements import NOTIFY_CHANNEL, normalize_url
from baton.store.sql.store import SqlStore
from baton.store.sql.tx import SqlTx

__all__ = ["NOTIFY_CHANNEL", "SQLITE_SYNCHRONOUS", "OperationalError", "PlanAborted", "PlanTx",
           "SqlStore", "SqlTx", "json_dumps", "json_loads", "normalize_url", "worker_host"]
