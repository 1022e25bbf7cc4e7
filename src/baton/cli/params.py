"""Option values the CLI checks itself: a filter's valid values, named in the error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer


def one_of(values: Sequence[str]) -> Callable[[Any], Any]:
    """A Typer option callback: the value (or each value of a repeated option) must be one
    of ``values``; otherwise a usage error names them all (``--status bogus``)."""
    def check(value: Any) -> Any:
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and v not in values:
                raise typer.BadParameter(f"{v!r} is not one of: {', '.join(values)}")
        return value

    return check


def listed(values: Sequence[str]) -> str:
    """``a, b or c``: valid values in help text."""
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else "".join(values)


# ---- Typer's coercion without pydantic for plain values ------------------------------------
# Typer 0.2x converts every option value with a pydantic TypeAdapter, built on first use:
# importing pydantic and building the adapters cost ~0.1-0.2 s of CPU per command, more than
# the rest of a read command's own work. For the values Baton's options take (text, whole
# numbers, flags, lists of them) the conversion is trivial, so it is done here; anything
# else, and every value that does not convert, goes to Typer's own coercion unchanged (with
# its own error messages). Typer versions without this internal hook (before 0.2x, which
# used click's types) are left as they are: the hook is looked up, never assumed.
# A ``Path`` parameter (``baton deploy PATH``, ``validate``, ``init``) without Typer's path
# options converts the same way as Typer's pydantic adapter converts it (``Path(text)``),
# then goes through Typer's own path checks; a value those checks refuse is handed to
# Typer's full coercion, so its error message is Typer's, word for word.
_PLAIN = (str, int, float)


def _plain(annotation: Any, value: Any) -> tuple[bool, Any]:
    """(True, converted) when ``value`` converts trivially to ``annotation``."""
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation not in _PLAIN or isinstance(value, bool):
        return False, None
    if isinstance(value, annotation):
        return True, value
    if isinstance(value, str) and annotation is int and value.strip().lstrip("+-").isdigit():
        return True, int(value)
    return False, None


def install_fast_coercion() -> bool:
    """Put the plain-value fast path in front of Typer's coercion; False if this Typer has
    no such hook (nothing is changed then)."""
    try:
        from typer import _coercion, _param_types, core
    except ImportError:
        return False
    original: Any = getattr(core, "build_runtime_param", None)
    check_path: Any = getattr(_param_types, "coerce_cli_path", None)  # Typer's path checks
    base = getattr(_coercion, "RuntimeParam", None)
    if original is None or base is None or getattr(original, "_baton_fast", False):
        return original is not None and base is not None

    class FastParam(base):  # type: ignore[misc,valid-type]
        """Plain values converted here; the rest by Typer's own runtime param, built lazily."""

        def __init__(self, descriptor: Any, item: Any, many: bool) -> None:
            super().__init__(parameter_info=descriptor.parameter_info,
                             annotation=descriptor.annotation)
            object.__setattr__(self, "_descriptor", descriptor)
            object.__setattr__(self, "_item", item)
            object.__setattr__(self, "_many", many)
            object.__setattr__(self, "_full", None)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self._item is Path and not self._many and isinstance(value, str | Path):
                try:
                    return check_path(value if isinstance(value, Path) else Path(value),
                                      self.parameter_info, path_type=Path, param=param, ctx=ctx)
                except typer.BadParameter:
                    pass  # Typer's own coercion says why, in its words
            elif self._many and isinstance(value, list | tuple):
                done = [_plain(self._item, v) for v in value]
                if all(ok for ok, _ in done):
                    return [v for _, v in done]
            elif not self._many:
                ok, converted = _plain(self._item, value)
                if ok:
                    return converted
            if self._full is None:
                object.__setattr__(self, "_full", original(self._descriptor))
            return self._full._coerce_value(value, param=param, ctx=ctx)

    def fast_build(descriptor: Any) -> Any:
        info = descriptor.parameter_info
        plain_info = (getattr(descriptor, "file_annotation", None) is None
                      and getattr(info, "parser", None) is None
                      and getattr(info, "min", None) is None and getattr(info, "max", None) is None)
        annotation = descriptor.annotation
        many = getattr(annotation, "__origin__", None) is list
        item = annotation.__args__[0] if many and len(annotation.__args__) == 1 else annotation
        if plain_info and (item in _PLAIN or item is bool):
            return FastParam(descriptor, item, many)
        if (plain_info and item is Path and not many and check_path is not None
                and getattr(info, "path_type", None) is None
                and not getattr(info, "allow_dash", False)):
            return FastParam(descriptor, item, many)
        return original(descriptor)

    fast_build._baton_fast = True  # type: ignore[attr-defined]
    setattr(core, "build_runtime_param", fast_build)  # noqa: B010 - a private hook, looked up
    return True


# ---- help: a flag shows no value --------------------------------------------------------------
def install_flag_help() -> bool:
    """Typer 0.2x's help shows every option's type, flags too (``--until-idle <bool>``),
    which reads as if the flag took a value (``--until-idle true`` is then refused as an
    extra argument): a flag shows none, as Click's plain help does. False (nothing changed)
    for a Typer without this method: the hook is looked up, never assumed."""
    try:
        from typer.core import TyperOption
    except ImportError:
        return False
    original: Any = getattr(TyperOption, "display_type_rich", None)
    if original is None:
        return False
    if getattr(original, "_baton_flag", False):
        return True

    def display_type_rich(self: Any, ctx: Any) -> Any:
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich._baton_flag = True  # type: ignore[attr-defined]
    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010 - looked up
    return True
