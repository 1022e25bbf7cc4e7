"""What an AI provider is: one protocol for every way of answering an ``ai`` step's task.

A provider classifies a text into categories and extracts typed fields from it. The offline
provider (:class:`OfflineProvider`: scikit-learn and typed patterns, no network) is the
default; a deployment picks another in ``baton.toml`` (``[ai] provider``) or a step with
``provider:``. Providers that call a language model (``openai``: any OpenAI-compatible
endpoint, ``anthropic``: :mod:`baton.ai.llm`, over a ``kind: connection``) answer in JSON; :func:`structured` checks such an answer
against the task's schema (:func:`classification_schema`, :func:`extraction_schema`), asks
once more with the validation error when it does not fit, and fails the step
(:class:`InvalidAnswer`, not retryable) when the second answer does not fit either.

``match`` (find a record from a text) is not a provider task: it is fuzzy matching over the
store's records (:mod:`baton.ai.match`), the same whichever provider the step uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, Self

from baton.decimals import MAX_PRECISION
from baton.definitions.checks import INT_MAX, INT_MIN
from baton.errors import BatonError, StepFailure

FIELD_TYPES = ("string", "int", "decimal", "date", "email", "url", "phone", "choice")


@dataclass(frozen=True)
class Category:
    """A class a text may belong to, with what the provider learns it from."""

    name: str
    description: str = ""
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldSpec:
    """A field to extract: its type, whether the step needs it, its choices (``choice``) and
    the regular expression its value must match (``pattern``; the offline extractor
    finds the value with it)."""

    name: str
    type: str = "string"
    required: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    labels: tuple[str, ...] = ()  # how the text may name it, besides its name
    description: str = ""


@dataclass(frozen=True)
class Usage:
    """What one call cost, where the provider says (the offline provider: nothing)."""

    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    attempts: int = 1  # 2 when the first answer failed validation


@dataclass(frozen=True)
class Classification:
    category: str
    confidence: float  # 0..1
    ranking: tuple[tuple[str, float], ...]  # (category, confidence), best first
    rationale: tuple[str, ...]  # why: the phrases that decided (offline) or the model's words
    usage: Usage


@dataclass(frozen=True)
class Found:
    """Where a value was found: the text as it stood and its offset (-1: not located)."""

    value: Any
    text: str
    start: int = -1
    how: str = ""  # which pattern or rule found it


@dataclass(frozen=True)
class Extraction:
    fields: Mapping[str, Found]  # the fields found (the others are missing)
    confidence: float
    usage: Usage
    notes: tuple[str, ...] = field(default=())  # anything else the provider says


class Provider(Protocol):
    """An AI provider. Both methods may raise :class:`~baton.errors.StepFailure` (the call
    failed: ``retryable`` says whether trying again may help)."""

    @property
    def name(self) -> str: ...

    def classify(self, text: str, categories: Sequence[Category]) -> Classification: ...

    def extract(self, text: str, fields: Sequence[FieldSpec],
                patterns: Mapping[str, str]) -> Extraction:
        """``patterns``: named regular expressions of the step (``order``, ``account``...)
        that a field of that name, or a field whose ``pattern`` names one, is found by."""


class OfflineProvider:
    """No network, no download: the TF-IDF classifier of :mod:`baton.ai.offline` and the
    typed patterns of :mod:`baton.ai.extract`."""

    name = "offline"

    def __init__(self, trained: Any = None) -> None:
        self.trained = trained  # a classifier's training set (baton ai train), or None

    def classify(self, text: str, categories: Sequence[Category]) -> Classification:
        from baton.ai.offline import MODEL_NAME, MODEL_VERSION, MODELS, fingerprint

        texts, labels = training_set(categories)
        model_name = f"{MODEL_NAME}/{MODEL_VERSION}"
        known = print_ = owner = None
        if self.trained is not None:
            known = self.trained.vectors  # its texts' sentence vectors, if it has them
            # (its texts hashed once: 2.6 of 5.4 ms a step on BANKING77's 10,003)
            print_ = fingerprint(texts, labels, self.trained.hasher)
            texts = [*self.trained.texts, *texts]
            labels = [*self.trained.labels, *labels]
            model_name += f" {self.trained.name} v{self.trained.version}"
            owner = (self.trained.name, self.trained.version)
        model = MODELS.get(texts, labels, known, print_=print_, owner=owner)
        if model.encoder_name is not None:  # the sentence encoder is consulted too
            model_name = model_name.replace(f"/{MODEL_VERSION}",
                                            f"/{MODEL_VERSION}+{model.encoder_name}", 1)
        (answer,) = model.classify([text])
        return Classification(answer.category, answer.confidence, answer.ranking,
                              answer.rationale, Usage(model_name))

    def extract(self, text: str, fields: Sequence[FieldSpec],
                patterns: Mapping[str, str]) -> Extraction:
        from baton.ai.extract import EXTRACTOR_MODEL, extract

        found = extract(text, fields, patterns)
        wanted = [f for f in fields if f.required] or list(fields)
        confidence = sum(f.name in found for f in wanted) / len(wanted) if wanted else 1.0
        return Extraction(found, round(confidence, 4), Usage(EXTRACTOR_MODEL))


def training_set(categories: Sequence[Category]) -> tuple[list[str], list[str]]:
    """The texts and labels categories give: each example, the description, and the name
    itself ("card_arrival" reads "card arrival": on BANKING77 with 10 examples an intent,
    the names add 1.5 to 2 points of accuracy)."""
    texts: list[str] = []
    labels: list[str] = []
    for cat in categories:
        for example in (cat.name.replace("_", " "), cat.description, *cat.examples):
            if example:
                texts.append(example)
                labels.append(cat.name)
    return texts, labels


@dataclass(frozen=True)
class ProviderContext:
    """What a provider that calls a model is given: the worker's connections
    (:class:`~baton.steps.base.StepServices`), the connection and model to use (the step's,
    else ``[ai]`` of ``baton.toml``), and the key its calls' idempotency keys start with
    (run, step, iteration)."""

    services: Any = None
    connection: str | None = None
    model: str | None = None
    call_key: str = "ai"
    trained: Any = None  # a :class:`baton.ai.trained.TrainingSet` (``classifier:``), offline


def _offline(ctx: ProviderContext) -> Provider:
    return OfflineProvider(ctx.trained)


def _openai(ctx: ProviderContext) -> Provider:
    from baton.ai.llm import OpenAIProvider

    return OpenAIProvider(ctx)


def _anthropic(ctx: ProviderContext) -> Provider:
    from baton.ai.llm import AnthropicProvider

    return AnthropicProvider(ctx)


PROVIDERS: dict[str, Callable[[ProviderContext], Provider]] = {
    "offline": _offline, "openai": _openai, "anthropic": _anthropic}
"""The providers this installation has, by the name ``provider:`` takes."""
MODEL_PROVIDERS = ("openai", "anthropic")
"""The providers that call a model over a connection (they need ``connection`` and ``model``)."""


def get_provider(name: str, ctx: ProviderContext | None = None) -> Provider:
    try:
        make = PROVIDERS[name]
    except KeyError:
        raise BatonError(f"unknown ai provider {name!r} (known: "
                         f"{', '.join(sorted(PROVIDERS))})") from None
    return make(ctx or ProviderContext())


# ---- structured answers (language-model providers) -------------------------------------------

class Problem(str):
    """What is wrong with an answer as the model is told it (with the values it gave), and
    :attr:`safe`: the same without those values, for the step's error message, which the
    worker logs (a value the model gave may be the customer's data: an e-mail address, an
    IBAN). The record keeps both (the step's error has ``problems``)."""

    safe: str

    def __new__(cls, told: str, safe: str | None = None) -> Self:
        made = super().__new__(cls, told)
        made.safe = told if safe is None else safe
        return made


def _safe(problem: str) -> str:
    return problem.safe if isinstance(problem, Problem) else problem


class InvalidAnswer(StepFailure):
    """A provider's answer did not fit the task's schema, twice. Its message names the
    problems without the values the model gave (it is logged); ``details["problems"]`` (in
    the step's error, on the record) has them with their values."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("the AI answer did not fit the schema after a retry: "
                         + "; ".join(_safe(p) for p in problems), retryable=False)
        self.problems = tuple(problems)
        self.details = {"problems": [str(p) for p in problems]}


def shown(value: Any) -> str:
    """A value as a problem's safe text names it: its kind and size, never its content
    (None, true/false and a number from 0 to 1, a confidence, as they are)."""
    if value is None or isinstance(value, bool) or (
            isinstance(value, int | float) and 0 <= value <= 1):
        return repr(value)
    if isinstance(value, str):
        return f"a text of {len(value)} character{'' if len(value) == 1 else 's'}"
    if isinstance(value, int | float):
        return "a number"
    return {"list": "a list", "dict": "an object"}.get(type(value).__name__,
                                                       type(value).__name__)


def classification_schema(categories: Sequence[Category]) -> dict[str, Any]:
    """The JSON schema a language model's classification answers with."""
    return {"type": "object", "additionalProperties": False,
            "required": ["category", "confidence", "rationale"],
            "properties": {
                "category": {"type": "string", "enum": [c.name for c in categories]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "rationale": {"type": "string"}}}


_JSON_TYPES = {"int": "integer", "decimal": "string", "date": "string"}


def extraction_schema(fields: Sequence[FieldSpec]) -> dict[str, Any]:
    """The JSON schema a language model's extraction answers with: each field's value (or
    null) and, for the rationale, the passage it was found in."""
    props: dict[str, Any] = {}
    for f in fields:
        value: dict[str, Any] = {"type": [_JSON_TYPES.get(f.type, "string"), "null"]}
        if f.choices:
            value["enum"] = [*f.choices, None]
        if f.pattern:
            value["pattern"] = f.pattern
        if f.type == "date":
            value["format"] = "date"
        props[f.name] = {"type": "object", "additionalProperties": False,
                         "required": ["value", "source"],
                         "properties": {"value": value, "source": {"type": ["string", "null"]}}}
    return {"type": "object", "additionalProperties": False, "required": [f.name for f in fields],
            "properties": {"fields": {"type": "object", "properties": props,
                                      "required": [f.name for f in fields]}},
            }


def check_classification(answer: Any, categories: Sequence[Category]) -> list[str]:
    """What is wrong with a structured classification answer (empty: nothing)."""
    if not isinstance(answer, Mapping):
        return [_not_an_object(answer)]
    problems: list[str] = []
    names = [c.name for c in categories]
    got = answer.get("category")
    if got not in names:
        problems.append(Problem(f"category {got!r} is not one of {', '.join(names)}",
                                f"category ({shown(got)}) is not one of {', '.join(names)}"))
    conf = answer.get("confidence")
    if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
        problems.append(Problem(f"confidence {conf!r} is not a number from 0 to 1",
                                f"confidence {shown(conf)} is not a number from 0 to 1"))
    if not isinstance(answer.get("rationale"), str):
        problems.append("rationale is missing (a text saying why)")
    return problems


def check_extraction(answer: Any, fields: Sequence[FieldSpec]) -> list[str]:
    """What is wrong with a structured extraction answer ``{fields: {name: {value,
    source}}}``: unknown fields, values of the wrong type, choices, patterns."""
    if not isinstance(answer, Mapping):
        return [_not_an_object(answer)]
    if not isinstance(answer.get("fields"), Mapping):
        return ["expected an object with 'fields'"]
    got = answer["fields"]
    known = {f.name: f for f in fields}
    problems: list[str] = [f"unknown field {k!r}" for k in got if k not in known]
    for f in fields:
        entry = got.get(f.name)
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        if value is None:
            continue
        problem = value_problem(f, value)
        if problem:
            problems.append(Problem(f"{f.name}: {problem}",
                                    f"{f.name}: {value_problem(f, value, show=shown)}"))
    return problems


def _not_an_object(answer: Any) -> str:
    if isinstance(answer, str):
        said = " ".join(answer.split())
        return Problem(f"expected a JSON object, got text: {said[:200]!r}" if said
                       else "expected a JSON object, got an empty answer",
                       f"expected a JSON object, got {shown(answer)}" if said
                       else "expected a JSON object, got an empty answer")
    return f"expected a JSON object, got {shown(answer)}"


def normal_value(f: FieldSpec, value: Any) -> Any:
    """A model's value of ``f`` (one :func:`value_problem` passed) as the offline extractor
    gives it: a date as ``YYYY-MM-DD`` (ISO's other forms, ``20240603``, too), a decimal
    as text without an exponent (``"12.5"``, not the number 12.5)."""
    if value is None:
        return None
    if f.type == "date":
        return date.fromisoformat(str(value)).isoformat()
    if f.type == "decimal":
        return format(_decimal(value), "f")
    return value


def _decimal(value: Any) -> Decimal:
    """A model's decimal value as a Decimal (an int without a text of it: Python refuses
    to write one of more than 4,300 digits as text). Raises InvalidOperation or ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return Decimal(str(value))


def decimal_problem(number: Decimal) -> str | None:
    """Why a finite ``number`` is no value a ``decimal`` field could take: more than
    :data:`~baton.decimals.MAX_PRECISION` digits before the point or after it (no field
    holds more: its precision is at most that). Checked on the exponent, so that
    ``1e20000000`` is refused without writing its 20,000,001 digits."""
    digits = number.adjusted() + 1 if number else 1  # (before the point)
    places = max(0, -number.as_tuple().exponent)  # type: ignore[operator]
    if digits > MAX_PRECISION or places > MAX_PRECISION:
        return (f"more digits than a decimal field holds (at most {MAX_PRECISION} before the "
                f"point and {MAX_PRECISION} after)")
    return None


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^(https?://)?[\w-]+(\.[\w-]+)+(/\S*)?$", re.IGNORECASE)
_PHONE = re.compile(r"^\+?[\d\s().-]{6,}$")


def value_problem(f: FieldSpec, value: Any, show: Callable[[Any], str] = repr) -> str | None:
    """Why ``value`` is not a value of ``f`` (None: it is). ``show`` writes the value
    (:func:`shown`: without it)."""
    try:
        v = show(value)
    except ValueError:  # (repr of an int of more than 4,300 digits)
        v = shown(value)
    if f.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected a whole number, got {v}"
        if not INT_MIN <= value <= INT_MAX:  # (what an int field holds: 64 bits)
            return f"expected a whole number from {INT_MIN} to {INT_MAX}, got {v}"
    elif f.type == "decimal":
        try:
            number = _decimal(value) if not isinstance(value, bool) else None
        except (InvalidOperation, ValueError):
            number = None
        if number is None or not number.is_finite():
            return f"expected a decimal number, got {v}"
        too_big = decimal_problem(number)
        if too_big:
            return f"expected a decimal number, got {v}: {too_big}"
    elif f.type == "date":
        try:
            date.fromisoformat(str(value))
        except ValueError:
            return f"expected a date YYYY-MM-DD, got {v}"
    elif not isinstance(value, str):
        return f"expected text, got {v}"
    elif f.type == "email" and not _EMAIL.match(value):
        return f"{v} is not an e-mail address"
    elif f.type == "url" and not _URL.match(value):
        return f"{v} is not a URL"
    elif f.type == "phone" and not _PHONE.match(value):
        return f"{v} is not a phone number"
    if f.choices and value not in f.choices:
        return f"{v} is not one of {', '.join(f.choices)}"
    if f.pattern and not re.fullmatch(f.pattern, str(value)):
        return f"{v} does not match {f.pattern!r}"
    return None


def structured(ask: Callable[[str | None], Any], check: Callable[[Any], list[str]]
               ) -> tuple[Any, int]:
    """Ask a model for a structured answer: ``ask(None)`` first; when ``check`` finds
    problems, ``ask(problems)`` once more (the model is told what was wrong); when those
    are still wrong, :class:`InvalidAnswer`. Returns the answer and the number of asks."""
    answer = ask(None)
    problems = check(answer)
    if not problems:
        return answer, 1
    answer = ask("Your answer did not fit the schema: " + "; ".join(problems)
                 + ". Answer again with JSON that fits it.")
    again = check(answer)
    if again:
        raise InvalidAnswer(again)
    return answer, 2
