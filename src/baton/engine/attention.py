"""Whether a run needs an operator: a step in fallout, or an open step past its SLA.

The answer is a small bit set kept on the run row (``attention``, migration 13), written
with every run state in the same compare-and-set as the state itself, so the Monitor's
"needs attention" filter is an index read (a partial index: runs that need nothing have
no entry in it, and their writes cost it nothing). ``None`` means nothing needs an
operator; a finished run never does (a failed run says so by its status).
"""

from __future__ import annotations

from baton.engine.sla import index_of
from baton.engine.state import Run
from baton.engine.status import RUN_IN_PROGRESS, STEP_FALLOUT, STEP_OPEN

FALLOUT = 1  # a step waits in fallout
SLA_BREACHED = 2  # an open step is past its SLA's due time
KINDS: tuple[tuple[int, str], ...] = ((FALLOUT, "fallout"), (SLA_BREACHED, "sla_breached"))
VALUES = (FALLOUT, SLA_BREACHED, FALLOUT | SLA_BREACHED)
"""Every value the column can hold: the filter reads one index range per value."""


def attention(run: Run) -> int | None:
    """The run's attention bits, or None when it needs nothing."""
    if run.status is not RUN_IN_PROGRESS:
        return None
    if run.step_marks is not None and (idx := index_of(run)) is not None:
        # (a plan's run: kept up to date from its steps marked changed, engine/sla.py)
        return ((FALLOUT if idx.fallout else 0) | (SLA_BREACHED if idx.overdue else 0)) or None
    bits = 0
    for sr in run.steps.values():
        if sr.status is STEP_FALLOUT:
            bits |= FALLOUT
        if sr.sla is not None and sr.sla.get("status") == "overdue" and sr.status in STEP_OPEN:
            bits |= SLA_BREACHED
    return bits or None


def kinds(bits: int | None) -> list[str]:
    """The bits as names, in a fixed order: ``["fallout", "sla_breached"]``."""
    return [name for bit, name in KINDS if bits and bits & bit]
