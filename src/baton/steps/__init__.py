"""Step types as plug-ins: one module per type behind :class:`~baton.steps.base.StepType`.

The built-in types register here, in the order messages list them; another step type is
one module plus ``registry.register(...)`` (see ``tests/integration/test_step_plugin_echo.py``).
"""

from baton.steps import registry
from baton.steps.ai import AI
from baton.steps.approval import APPROVAL
from baton.steps.background import BACKGROUND
from baton.steps.callout import CALLOUT
from baton.steps.interactive import INTERACTIVE
from baton.steps.mcp import MCP
from baton.steps.milestone import MILESTONE
from baton.steps.orchestration import ORCHESTRATION
from baton.steps.pause import PAUSE

for _builtin in (BACKGROUND, INTERACTIVE, MILESTONE, PAUSE, AI, APPROVAL, ORCHESTRATION,
                 CALLOUT, MCP):
    registry.register(_builtin)

__all__ = ["registry"]
