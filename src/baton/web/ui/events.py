"""Timelines on the web pages: each audit event as one line of text, in the words the CLI
prints them (:mod:`baton.runtime.describe`, in a page's notation: ``stage / step
(iteration 1)``, ``reason: ...``). Never cut: the page wraps a long line, and shows one of
more than 2000 characters by its start with the whole of it behind "Show all" (the
``timeline`` macro of ``_macros.html``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.runtime.describe import PAGE
from baton.runtime.describe import describe_event as _describe


def describe_event(e: Mapping[str, Any]) -> str:
    """``e`` as one line of a page's timeline (whole)."""
    return _describe(e, PAGE)
