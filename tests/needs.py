"""Optional test dependencies: skipped where they are missing, a failure under ``CI=true``.

``pytest.importorskip`` alone would let CI pass having run nothing of a module whose
dependency failed to install.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """Import ``module``; skip the test without it, or fail under ``CI=true``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is required under CI=true: {exc}", pytrace=False)
        pytest.skip(f"{module} is not installed: {exc}")
