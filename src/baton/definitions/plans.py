"""``kind: catalog`` and ``kind: fulfillment`` (DESIGN §2.4): frozen objects, checks, build.

A catalog says what commercial products and bundles decompose into; a fulfillment says
which steps a plan gets for the lines its scenarios match. Both are checked with every
problem located (file, line, path) and reported at once, like the other kinds.
Steps stay plain validated data: a plan copies them into the step graph it generates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from baton.definitions.checks import (
    Checker,
    Scope,
    check_condition,
    check_keys,
    check_policies,
    check_texts,
    check_value,
    describe,
    expect_bool,
    expect_identifier,
    expect_list,
    expect_mapping,
    expect_str,
    find_cycles,
    item,
    join,
    suggest,
    unknown,
)
from baton.expressions import is_expression, referenced_names

CATALOG_KEYS = ("kind", "name", "label", "description", "products", "rules", "lookups")
PRODUCT_KEYS = ("code", "name", "family", "label", "description", "attributes", "children",
                "decomposes_to")
RULE_KEYS = ("product", "family", "decomposes_to")
TARGET_KEYS = ("product", "qty", "attributes")
LOOKUP_KEYS = ("lookup", "key", "default")
FULFILLMENT_KEYS = ("kind", "name", "label", "description", "trigger", "catalog", "lines",
                    "lanes", "defaults", "groups", "scenarios")
SCENARIO_KEYS = ("name", "label", "description", "when", "steps", "groups")
PLAN_STEP_KEYS = ("scope", "ponr", "rollback", "not_before")
SCOPES = ("plan", "bundle", "line_item")
DEFAULT_KEYS = ("sla", "retry", "timeout", "on_failure")
LINE_ACTIONS = ("add", "amend", "renew", "no_change", "cancel")
DEFAULT_CATALOG = "catalog"
_LINE_ATTR = re.compile(r"\bline\s*\.\s*attributes\s*\.\s*([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Target:
    """One fulfillment product a line decomposes to: how many, with which attributes
    (name -> literal, ``=expression`` or ``{lookup, key, default}``)."""

    product: str
    qty: Any = "=line.qty"
    attributes: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Product:
    code: str
    family: str | None = None
    name: str | None = None
    attributes: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    children: tuple[str, ...] = ()
    decomposes_to: tuple[Target, ...] | None = None  # None: no rule of its own


@dataclass(frozen=True)
class Rule:
    """A decomposition rule of the catalog by product code or by family."""

    targets: tuple[Target, ...]
    product: str | None = None
    family: str | None = None


@dataclass(frozen=True)
class CatalogDefinition:
    name: str
    products: MappingProxyType[str, Product]
    rules: tuple[Rule, ...] = ()
    lookups: MappingProxyType[str, MappingProxyType[str, Any]] = field(
        default_factory=lambda: MappingProxyType({}))
    label: str | None = None

    def targets(self, product: Product) -> tuple[Target, ...] | None:
        """What ``product`` decomposes to: its own ``decomposes_to``, else a rule by its
        code, else a rule by its family; None when it fulfills itself."""
        if product.decomposes_to is not None:
            return product.decomposes_to
        for rule in self.rules:
            if rule.product == product.code:
                return rule.targets
        for rule in self.rules:
            if rule.family is not None and rule.family == product.family:
                return rule.targets
        return None


@dataclass(frozen=True)
class Scenario:
    name: str
    when: str
    steps: tuple[str, ...]  # names of the step templates it adds


@dataclass(frozen=True)
class FulfillmentDefinition:
    name: str
    trigger: Any  # baton.definitions.model.Trigger
    line_object: str
    catalog: str
    lanes: tuple[str, ...]
    templates: MappingProxyType[str, MappingProxyType[str, Any]]  # step name -> its data
    scenarios: tuple[Scenario, ...]
    defaults: MappingProxyType[str, MappingProxyType[str, Any]]  # step type -> policies
    label: str | None = None


# --- checks --------------------------------------------------------------------------


def check_catalog(ck: Checker, data: dict[str, Any]) -> None:
    check_keys(ck, "", data, CATALOG_KEYS, ("products",))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "catalog name")
    check_texts(ck, "", data, ("label", "description"))
    lookups = _check_lookups(ck, data.get("lookups"))
    products: dict[str, dict[str, Any]] = {}
    paths: dict[str, str] = {}
    for i, p in enumerate(expect_list(ck, "products", data.get("products", [])) or []):
        path = item("products", i)
        m = expect_mapping(ck, path, p)
        if m is None:
            continue
        check_keys(ck, path, m, PRODUCT_KEYS, ("code",))
        code = expect_str(ck, join(path, "code"), m.get("code")) if "code" in m else None
        if code is None:
            continue
        if code in products:
            ck.add(join(path, "code"), f"product '{code}' is already defined at {paths[code]}")
            continue
        products[code], paths[code] = m, path
        check_texts(ck, path, m, ("family", "name", "label", "description"))
        _attribute_names(ck, join(path, "attributes"), m.get("attributes"))
    codes = list(products)
    graph: dict[str, list[str]] = {c: [] for c in codes}
    for code, m in products.items():
        path = paths[code]
        for j, child in enumerate(expect_list(ck, join(path, "children"), m["children"]) or []
                                  if "children" in m else []):
            if _known(ck, item(join(path, "children"), j), child, products):
                graph[code].append(child)
        if "decomposes_to" in m:
            for t in _check_targets(ck, join(path, "decomposes_to"), m["decomposes_to"],
                                    products, lookups, [m]):
                graph[code].append(t)
    families = {m.get("family") for m in products.values()}
    for i, r in enumerate(expect_list(ck, "rules", data["rules"]) or [] if "rules" in data else []):
        path = item("rules", i)
        m = expect_mapping(ck, path, r)
        if m is None:
            continue
        check_keys(ck, path, m, RULE_KEYS, ("decomposes_to",))
        if ("product" in m) == ("family" in m):
            ck.add(path, "a rule matches either a product (product: CODE) or a family "
                         "(family: NAME)")
            continue
        if "product" in m:
            if not _known(ck, join(path, "product"), m["product"], products):
                continue
            sources = [products[m["product"]]]
        else:
            fam = expect_str(ck, join(path, "family"), m["family"])
            if fam is None:
                continue
            if fam not in families:
                ck.add(join(path, "family"), f"no product has family '{fam}'"
                       f"{suggest(fam, [f for f in families if isinstance(f, str)])}")
                continue
            sources = [p for p in products.values() if p.get("family") == fam]
        targets = _check_targets(ck, join(path, "decomposes_to"), m["decomposes_to"], products,
                                 lookups, sources)
        for src in sources:
            if "decomposes_to" not in src:
                graph[src["code"]].extend(targets)
    for cycle in find_cycles(graph, codes):
        ck.add(join(paths[cycle[0]], "code"), "cycle in decomposition: " + " -> ".join(cycle))


def _check_lookups(ck: Checker, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    tables = expect_mapping(ck, "lookups", value) or {}
    for name, table in tables.items():
        expect_identifier(ck, join("lookups", str(name)), name, "lookup table name")
        expect_mapping(ck, join("lookups", str(name)), table)
    return tables


def _attribute_names(ck: Checker, path: str, value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, list):
        for j, a in enumerate(value):
            expect_identifier(ck, item(path, j), a, "attribute name")
        return {a for a in value if isinstance(a, str)}
    if isinstance(value, dict):
        for a in value:
            expect_identifier(ck, join(path, str(a)), a, "attribute name")
        return {a for a in value if isinstance(a, str)}
    ck.add(path, f"expected a list of attribute names or a mapping of defaults, got "
                 f"{describe(value)}")
    return set()


def _attrs(p: Mapping[str, Any]) -> set[str]:
    a = p.get("attributes")
    return {x for x in a if isinstance(x, str)} if isinstance(a, list | dict) else set()


def _known(ck: Checker, path: str, code: Any, products: Mapping[str, Any]) -> bool:
    if expect_str(ck, path, code) is None:
        return False
    if code not in products:
        ck.add(path, f"unknown product '{code}'{suggest(code, products)}")
        return False
    return True


def _check_targets(ck: Checker, path: str, value: Any, products: Mapping[str, Any],
                   lookups: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each target of a ``decomposes_to``; returns the product codes it names."""
    out = []
    readable = set.intersection(*[_attrs(s) for s in sources]) if sources else set()
    for j, t in enumerate(expect_list(ck, path, value) or []):
        tpath = item(path, j)
        m = expect_mapping(ck, tpath, t)
        if m is None:
            continue
        check_keys(ck, tpath, m, TARGET_KEYS, ("product",))
        if not _known(ck, join(tpath, "product"), m.get("product"), products):
            continue
        out.append(m["product"])
        if "qty" in m:
            q = m["qty"]
            if isinstance(q, str) and is_expression(q):
                _check_mapping_expr(ck, join(tpath, "qty"), q, readable)
            elif not (isinstance(q, int) and not isinstance(q, bool) and q >= 1):
                ck.add(join(tpath, "qty"), f"expected a whole number >= 1 or an '=expression', "
                                           f"got {describe(q)}")
        attrs = expect_mapping(ck, join(tpath, "attributes"), m["attributes"]) \
            if "attributes" in m else None
        own = _attrs(products[m["product"]])
        for name, v in (attrs or {}).items():
            apath = join(join(tpath, "attributes"), str(name))
            if name not in own:
                ck.add(apath, f"product '{m['product']}' has no attribute '{name}'"
                              f"{suggest(name, own)}")
            _check_attribute_value(ck, apath, v, readable, lookups)
    return out


def _check_attribute_value(ck: Checker, path: str, v: Any, readable: set[str],
                           lookups: Mapping[str, Any]) -> None:
    if isinstance(v, str) and is_expression(v):
        _check_mapping_expr(ck, path, v, readable)
    elif isinstance(v, dict):
        check_keys(ck, path, v, LOOKUP_KEYS, ("lookup", "key"))
        table = v.get("lookup")
        if "lookup" in v and table not in lookups:
            ck.add(join(path, "lookup"), f"unknown lookup table '{table}'{suggest(table, lookups)}")
        key = v.get("key")
        if isinstance(key, str) and is_expression(key):
            _check_mapping_expr(ck, join(path, "key"), key, readable)


def _check_mapping_expr(ck: Checker, path: str, source: str, readable: set[str]) -> None:
    """An attribute mapping or quantity sees ``line`` (the commercial line) and ``record``
    (the order); it may only read attributes its source product has."""
    check_value(ck, path, source, Scope(steps=frozenset(), record_fields=None, allow_line=True))
    for name in dict.fromkeys(_LINE_ATTR.findall(source)):
        if name not in readable:
            ck.add(path, f"reads unknown attribute '{name}' of the line"
                         f"{suggest(name, readable)} (its product has: "
                         f"{', '.join(sorted(readable)) or 'none'})")


def check_fulfillment(ck: Checker, data: dict[str, Any], scope: Scope,
                      check_step: Any) -> None:
    """``check_step(ck, path, step, scope)``: the orchestration step rules (validate.py)."""
    check_keys(ck, "", data, FULFILLMENT_KEYS, ("name", "trigger", "lines", "scenarios"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "fulfillment name")
    check_texts(ck, "", data, ("label", "description", "catalog"))
    lines = expect_mapping(ck, "lines", data["lines"]) if "lines" in data else None
    if lines is not None:
        check_keys(ck, "lines", lines, ("object",), ("object",))
        obj = lines.get("object")
        if isinstance(obj, str) and scope.object_types is not None \
                and obj not in scope.object_types and not scope.unknown_objects:
            ck.add("lines.object", f"unknown object type '{obj}'{suggest(obj, scope.object_types)}")
    lanes = [x for x in expect_list(ck, "lanes", data["lanes"]) or [] if isinstance(x, str)] \
        if "lanes" in data else []
    defaults = expect_mapping(ck, "defaults", data["defaults"]) if "defaults" in data else None
    for stype, pol in (defaults or {}).items():
        path = join("defaults", str(stype))
        from baton.steps import registry
        st = registry.get(stype)
        if st is None:
            ck.add(path, unknown("step type", stype, registry.names()))
        m = expect_mapping(ck, path, pol)
        if m is not None:
            check_keys(ck, path, m, DEFAULT_KEYS)
            check_policies(ck, path, m, scope.known_flows)  # (the steps' own sla/retry/timeout rules)
            if "timeout" in m and st is not None and "timeout" not in st.keys:
                ck.add(join(path, "timeout"), f"timeout does not apply to {stype} steps "
                       "(only to background, callout and mcp steps; a person's step is "
                       "bounded by its sla:)")
    # Every step template, wherever it is written (a group or a scenario's own steps).
    templates: dict[str, tuple[str, dict[str, Any]]] = {}
    groups = expect_mapping(ck, "groups", data["groups"]) if "groups" in data else {}
    for gname, steps in (groups or {}).items():
        gpath = join("groups", str(gname))
        expect_identifier(ck, gpath, gname, "step group name")
        for j, s in enumerate(expect_list(ck, gpath, steps) or []):
            _template(ck, item(gpath, j), s, templates)
    scenarios = expect_list(ck, "scenarios", data.get("scenarios", [])) or []
    names: set[str] = set()
    for i, sc in enumerate(scenarios):
        path = item("scenarios", i)
        m = expect_mapping(ck, path, sc)
        if m is None:
            continue
        check_keys(ck, path, m, SCENARIO_KEYS, ("name", "when"))
        name = expect_identifier(ck, join(path, "name"), m.get("name"), "scenario name") \
            if "name" in m else None
        if name in names:
            ck.add(join(path, "name"), f"scenario '{name}' is already defined")
        names.add(name or "")
        if "when" in m:
            check_condition(ck, join(path, "when"), m["when"], scope)
        if "steps" not in m and "groups" not in m:
            ck.add(path, "a scenario adds steps: give steps, groups or both")
        for j, g in enumerate(expect_list(ck, join(path, "groups"), m["groups"]) or []
                              if "groups" in m else []):
            if g not in (groups or {}):
                ck.add(item(join(path, "groups"), j),
                       f"unknown step group '{g}'{suggest(g, groups or {})}")
        for j, s in enumerate(expect_list(ck, join(path, "steps"), m["steps"]) or []
                              if "steps" in m else []):
            _template(ck, item(join(path, "steps"), j), s, templates)
    step_scope = Scope(steps=frozenset(templates), variables=scope.variables,
                       has_record=True, record_fields=scope.record_fields,
                       known_flows=scope.known_flows, object_types=scope.object_types,
                       connections=scope.connections, orchestrations=scope.orchestrations,
                       allow_line=True, record_object=scope.record_object,
                       objects=scope.objects, unknown_objects=scope.unknown_objects)
    graph: dict[str, list[str]] = {n: [] for n in templates}
    for name, (path, s) in templates.items():
        _check_plan_step(ck, path, s, step_scope, check_step, lanes, templates, graph)
    for cycle in find_cycles(graph, list(templates)):
        ck.add(join(templates[cycle[0]][0], "after"), "cycle in after: " + " -> ".join(cycle))
    _check_step_reads(ck, templates)


# --- steps.<template> across scopes ----------------------------------------------------
#
# A plan step is named by its scope's instance (``reserve[L1]``), its template's name is
# no step of the run: what ``steps.<template>`` reads in a template's expressions is worked
# out when the plan is made (generate.py rewrites it to the instance's name). It must name
# ONE instance for every instance of the reading template, as ``after`` does for a line:
# its own instance (the template itself), the plan's single one, and from a line the same
# line's, the line's bundle's, the line's group's; a bundle its own bundle's; a group the
# same group's (the same ``group_by``). Any other reading names several (every line's) and
# is refused here: an expression cannot read a list of a template's instances.

_MANY = {"line_item": "one step per line: {t}[L1], {t}[L2]...",
         "bundle": "one step per bundle line: {t}[L1], {t}[L2]...",
         "group": "one step per value of its group_by: {t}[<value>]..."}


def template_kind(template: Mapping[str, Any]) -> str | None:
    """``plan``, ``bundle``, ``line_item`` (the default) or ``group``; None: a scope that
    is none of them (reported by the step's checks)."""
    sc = template.get("scope", "line_item")
    if isinstance(sc, Mapping):
        return "group"
    return sc if isinstance(sc, str) and sc in SCOPES else None


def reads_one_instance(reader: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    """Whether ``steps.<target>`` in ``reader``'s expressions names one instance of
    ``target`` for each instance of ``reader`` (see above). Both are valid templates."""
    rk, tk = template_kind(reader), template_kind(target)
    if reader is target or tk == "plan":
        return True
    if rk == "line_item":
        return True  # the same line's, its bundle's, its group's
    if rk == tk == "bundle":
        return True
    return rk == tk == "group" and \
        reader["scope"].get("group_by") == target["scope"].get("group_by")


def step_reads(source: str) -> list[str]:
    """The step names an expression reads (``steps.x``, ``steps["x"]``), in order."""
    return list(dict.fromkeys(m for var, m in referenced_names(source) if var == "steps"))


def _expressions(path: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if is_expression(value):
            yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _expressions(join(path, str(k)), v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _expressions(item(path, i), v)


def _check_step_reads(ck: Checker, templates: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
    for name, (tpath, t) in templates.items():
        rk = template_kind(t)
        if rk is None:
            continue
        sc = t.get("scope")
        planned = [(join(tpath, "not_before"), t.get("not_before"))]
        if isinstance(sc, Mapping):
            planned.append((join(tpath, "scope.group_by"), sc.get("group_by")))
        for path, source in planned:
            if isinstance(source, str) and is_expression(source) and step_reads(source):
                key = path.rsplit(".", 1)[-1]
                ck.add(path, f"{key} is worked out when the plan is made, before any step has "
                             f"run: it reads line and record, not steps "
                             f"(steps.{step_reads(source)[0]})")
        body = {k: v for k, v in t.items() if k not in ("name", "after", "scope", "not_before")}
        for path, source in _expressions(tpath, body):
            for ref in step_reads(source):
                target = templates.get(ref)
                if target is None or template_kind(target[1]) is None \
                        or reads_one_instance(t, target[1]):
                    continue  # (an unknown step is reported by the step's checks)
                ck.add(path, _ambiguous(name, rk, ref, target[1]))


def _ambiguous(name: str, kind: str, ref: str, target: Mapping[str, Any]) -> str:
    tk = template_kind(target) or ""
    many = _MANY[tk].format(t=ref)
    scope = "{group_by: ...}" if tk == "group" else tk
    if kind == tk == "group":
        why = (f"steps.{ref} is ambiguous in step '{name}': '{ref}' groups its lines by "
               f"another group_by ({many})")
    else:
        why = (f"steps.{ref} is ambiguous in step '{name}' (scope "
               f"{'{group_by: ...}' if kind == 'group' else kind}): '{ref}' has scope {scope}, "
               f"{many}")
    whose = {"line_item": "the same line's", "bundle": "the line's bundle's",
             "group": "the line's group's"}[tk]
    return (f"{why}, and an expression cannot read a list of a template's steps. Read "
            f"steps.{ref} in a step of scope line_item, where it is {whose} {ref}; here, "
            f"wait for all of them with after: [{ref}]")


def _template(ck: Checker, path: str, s: Any, templates: dict[str, tuple[str, dict[str, Any]]]
              ) -> None:
    m = expect_mapping(ck, path, s)
    if m is None or not isinstance(m.get("name"), str):
        if m is not None:
            ck.add(join(path, "name"), "required key 'name' is missing")
        return
    if m["name"] in templates:
        ck.add(join(path, "name"), f"step '{m['name']}' is already defined at "
                                   f"line {ck.line(templates[m['name']][0])}")
        return
    templates[m["name"]] = (path, m)


def _check_plan_step(ck: Checker, path: str, s: dict[str, Any], scope: Scope, check_step: Any,
                     lanes: list[str], templates: Mapping[str, Any],
                     graph: dict[str, list[str]]) -> None:
    plain = {k: v for k, v in s.items() if k not in PLAN_STEP_KEYS}
    check_step(ck, path, plain, scope)
    lane = s.get("lane")
    if isinstance(lane, str) and lanes and lane not in lanes:
        ck.add(join(path, "lane"), f"unknown lane '{lane}'{suggest(lane, lanes)}")
    sc = s.get("scope", "line_item")
    if isinstance(sc, dict):
        check_keys(ck, join(path, "scope"), sc, ("group_by",), ("group_by",))
        if "group_by" in sc:
            check_value(ck, join(path, "scope.group_by"), sc["group_by"], scope)
    elif sc not in SCOPES:
        ck.add(join(path, "scope"), unknown("scope", sc, (*SCOPES, "{group_by: ...}")))
    if "ponr" in s:
        expect_bool(ck, join(path, "ponr"), s["ponr"])
    if "not_before" in s:
        nb = s["not_before"]
        if isinstance(nb, str) and is_expression(nb):
            check_value(ck, join(path, "not_before"), nb, scope)
        else:
            ck.add(join(path, "not_before"), f"expected an '=expression' giving a date, "
                                             f"got {describe(nb)}")
    if "rollback" in s:
        rb = expect_mapping(ck, join(path, "rollback"), s["rollback"])
        if rb is not None:
            rb = {"name": f"rollback_{s['name']}", **rb}
            check_step(ck, join(path, "rollback"), rb, scope)
    for j, ref in enumerate(expect_list(ck, join(path, "after"), s["after"]) or []
                            if "after" in s else []):
        if expect_str(ck, item(join(path, "after"), j), ref) is None:
            continue
        if ref not in templates:
            ck.add(item(join(path, "after"), j), f"unknown step '{ref}'{suggest(ref, templates)}")
        else:
            graph[s["name"]].append(ref)


# --- build ---------------------------------------------------------------------------


def build_catalog(data: Mapping[str, Any]) -> CatalogDefinition:
    def targets(v: Any) -> tuple[Target, ...]:
        return tuple(Target(t["product"], t.get("qty", "=line.qty"),
                            MappingProxyType(dict(t.get("attributes") or {}))) for t in v)

    products = {}
    for p in data["products"]:
        attrs = p.get("attributes") or {}
        products[p["code"]] = Product(
            p["code"], p.get("family"), p.get("name"),
            MappingProxyType(dict(attrs) if isinstance(attrs, dict) else dict.fromkeys(attrs)),
            tuple(p.get("children") or ()),
            targets(p["decomposes_to"]) if "decomposes_to" in p else None)
    rules = tuple(Rule(targets(r["decomposes_to"]), r.get("product"), r.get("family"))
                  for r in data.get("rules") or ())
    lookups = {k: MappingProxyType(dict(v)) for k, v in (data.get("lookups") or {}).items()}
    return CatalogDefinition(data.get("name", DEFAULT_CATALOG), MappingProxyType(products), rules,
                             MappingProxyType(lookups), data.get("label"))


def build_fulfillment(data: Mapping[str, Any], trigger: Any) -> FulfillmentDefinition:
    templates: dict[str, MappingProxyType[str, Any]] = {}
    groups = data.get("groups") or {}
    for steps in groups.values():
        for s in steps:
            templates[s["name"]] = MappingProxyType(dict(s))
    scenarios = []
    for sc in data["scenarios"]:
        names = [s["name"] for g in sc.get("groups") or () for s in groups[g]]
        for s in sc.get("steps") or ():
            templates[s["name"]] = MappingProxyType(dict(s))
            names.append(s["name"])
        when = sc["when"]
        scenarios.append(Scenario(sc["name"], "=true" if when is True else
                                  "=false" if when is False else str(when),
                                  tuple(dict.fromkeys(names))))
    return FulfillmentDefinition(
        name=data["name"], trigger=trigger, line_object=data["lines"]["object"],
        catalog=data.get("catalog", DEFAULT_CATALOG), lanes=tuple(data.get("lanes") or ()),
        templates=MappingProxyType(templates), scenarios=tuple(scenarios),
        defaults=MappingProxyType({k: MappingProxyType(dict(v))
                                   for k, v in (data.get("defaults") or {}).items()}),
        label=data.get("label"))
