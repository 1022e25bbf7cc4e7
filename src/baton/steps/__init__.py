"""Step types as plug-ins: one module per type behind :class:`~baton.steps.base.StepType`.

The built-in types register on the registry's first lookup (``baton.steps.registry``), in
the order messages list them, so that importing the engine does not import every step
type's own dependencies (a CLI read needs none of them); another step type is one module
plus ``registry.register(...)`` (see ``tests/integration/test_step_plugin_echo.py``).
"""

from baton.steps import registry

__all__ = ["registry"]
