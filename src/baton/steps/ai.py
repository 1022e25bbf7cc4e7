"""``type: ai``: read unstructured text and answer with a structured result and its reasons.

``task: classify`` puts a text (an ``=expression`` over the record, usually its subject and
body) into one of the step's categories. Each category has a description and examples; the
offline provider (``baton.ai.offline``, no network) is trained on them the first time a
worker meets the step, and answers with the category, a confidence, the runners-up and a
rationale (the words that decided). Below ``min_confidence`` the answer's ``outcome`` is
``review`` rather than ``classified``, so the next steps route it to a person instead of
acting on it. Everything about the answer is in the step's output, so the record's timeline
(the ``step_completed`` event) says what the AI decided and why.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from baton.definitions.checks import (
    Checker,
    Scope,
    check_keys,
    check_value,
    expect_list,
    expect_mapping,
    item,
    join,
    unknown,
)
from baton.definitions.model import StepDefinition
from baton.errors import ExpressionError, StepFailure
from baton.expressions import evaluate, is_expression
from baton.steps.base import JobStepType, StepOutput, StepWork

TASKS = ("classify",)
PROVIDERS = ("offline",)
CATEGORY_KEYS = ("name", "description", "examples")
MAX_TEXT = 20_000  # characters of input the classifier reads (the start of a long message)


class Ai(JobStepType):
    name = "ai"
    keys = ("task", "text", "categories", "min_confidence", "provider")
    job_kind = "ai"

    # ---- validation -------------------------------------------------------------------
    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        task = step.get("task")
        if "task" not in step:
            ck.add(join(path, "task"), f"required key 'task' is missing (one of: {', '.join(TASKS)})")
        elif task not in TASKS:
            ck.add(join(path, "task"), unknown("ai task", task, TASKS))
        if "text" not in step:
            ck.add(join(path, "text"), "required key 'text' is missing (what to read: an "
                                       "=expression such as '=record.subject + \" \" + record.body')")
        else:
            check_value(ck, join(path, "text"), step["text"], scope)
        if "provider" in step and step["provider"] not in PROVIDERS:
            ck.add(join(path, "provider"), unknown("ai provider", step["provider"], PROVIDERS))
        if "min_confidence" in step:
            value = step["min_confidence"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                ck.add(join(path, "min_confidence"),
                       f"expected a number from 0 to 1, got {value!r}")
        if task == "classify":
            _check_categories(ck, join(path, "categories"), step)

    def chainable(self, step: StepDefinition) -> bool:
        return True  # the offline provider answers in milliseconds once trained

    # ---- the attempt ------------------------------------------------------------------
    def run_job(self, work: StepWork) -> StepOutput:
        from baton.engine.decide import expression_scope  # (decide imports the step types)

        step = work.step
        assert work.orchestration is not None
        scope = expression_scope(dict(work.record or {}), work.run, work.now,
                                 work.orchestration)
        try:
            text = evaluate(step.options["text"], scope) if is_expression(
                step.options["text"]) else step.options["text"]
        except ExpressionError as exc:
            raise StepFailure(f"text: {exc.reason}", retryable=False) from exc
        if not isinstance(text, str):
            raise StepFailure(f"text gave {type(text).__name__}, not text", retryable=False)
        return StepOutput(classify(step, text))


def training_set(step: StepDefinition) -> tuple[list[str], list[str]]:
    """The texts and labels a step's categories give: each example, and the description."""
    texts: list[str] = []
    labels: list[str] = []
    for cat in step.options["categories"]:
        for example in [cat.get("description"), *cat.get("examples", ())]:
            if example:
                texts.append(str(example))
                labels.append(cat["name"])
    return texts, labels


def prompt_version(step: StepDefinition) -> str:
    """Which version of the task answered: a hash of the task and its categories (a change
    to a description or an example is a new version, visible in the audit)."""
    spec = {"task": step.options["task"], "categories": step.options["categories"]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def classify(step: StepDefinition, text: str) -> dict[str, Any]:
    """Classify ``text`` with the step's categories (offline provider)."""
    from baton.ai.offline import MODEL_NAME, MODEL_VERSION, MODELS

    texts, labels = training_set(step)
    started = time.perf_counter()
    model = MODELS.get(texts, labels)
    (answer,) = model.classify([text[:MAX_TEXT]])
    latency = time.perf_counter() - started
    threshold = step.options.get("min_confidence")
    review = threshold is not None and answer.confidence < float(threshold)
    return {
        "category": answer.category,
        "confidence": answer.confidence,
        "outcome": "review" if review else "classified",
        "ranking": [{"category": c, "confidence": p} for c, p in answer.ranking],
        "rationale": list(answer.rationale),
        "ai": {"provider": "offline", "model": f"{MODEL_NAME}/{MODEL_VERSION}",
               "prompt_version": prompt_version(step),
               "input_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
               "input_chars": len(text), "latency_ms": round(latency * 1000, 1)},
    }


def _check_categories(ck: Checker, path: str, step: Mapping[str, Any]) -> None:
    if "categories" not in step:
        ck.add(path, "required key 'categories' is missing (a list of {name, description, "
                     "examples})")
        return
    cats = expect_list(ck, path, step["categories"])
    if cats is None:
        return
    seen: set[str] = set()
    for k, cat in enumerate(cats):
        cpath = item(path, k)
        m = expect_mapping(ck, cpath, cat)
        if m is None:
            continue
        check_keys(ck, cpath, m, CATEGORY_KEYS, ("name",))
        name = m.get("name")
        if isinstance(name, str):
            if name in seen:
                ck.add(join(cpath, "name"), f"duplicate category '{name}'")
            seen.add(name)
        elif "name" in m:
            ck.add(join(cpath, "name"), f"expected a category name, got {name!r}")
        if "description" in m and not isinstance(m["description"], str):
            ck.add(join(cpath, "description"), "expected text")
        examples = m.get("examples", [])
        if "examples" in m and expect_list(ck, join(cpath, "examples"), examples) is None:
            continue
        if not m.get("description") and not examples:
            ck.add(cpath, f"category '{name}' needs a description or examples to learn from")
        for e, example in enumerate(examples or []):
            if not isinstance(example, str) or not example.strip():
                ck.add(item(join(cpath, "examples"), e), "expected a non-empty example text")
    if len(seen) < 2:
        ck.add(path, "classify needs at least two categories")


AI = Ai()
