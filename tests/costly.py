"""Definitions whose expressions fail at run time, shared by the hardening and incident tests.

``COSTLY`` is six nested comprehensions over ten elements: a million iterations, past CEL's
evaluation budget, so evaluating it is an ``ExpressionError`` (it compiles fine).
"""

from __future__ import annotations

TEN = "[1,2,3,4,5,6,7,8,9,10]"
COSTLY = "".join(f"{TEN}.all({v}, " for v in "abcdef") + "true" + ")" * 6

GADGETS = f"""
kind: object
name: Gadget
fields:
  label: {{type: string, required: true}}
  broken: {{type: bool, default: true}}
---
kind: orchestration
name: gadget_check
trigger: {{type: record, object: Gadget, on: [create], when: '=record.broken ? ({COSTLY}) : true'}}
stages:
  - name: only
    steps: [{{name: look, type: interactive, assign: {{queue: tier1}}}}]
"""
"""A record trigger that fails while ``broken`` is true and holds once it is false."""
