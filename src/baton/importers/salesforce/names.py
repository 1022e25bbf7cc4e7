"""Salesforce API names -> Baton names, one rule each, used everywhere the name is read."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

RESERVED_STAGES = frozenset({"end"})
BUILTIN_FIELDS = {"Id": "id", "CreatedDate": "created_at", "LastModifiedDate": "updated_at",
                  "SystemModstamp": "updated_at"}
"""Salesforce fields that are a Baton record's own built-in fields."""

RELATIONSHIP_OBJECTS = {
    "Owner": "User", "CreatedBy": "User", "LastModifiedBy": "User", "Manager": "User",
    "Delegate": "User", "Approver": "User", "Account": "Account", "Contact": "Contact",
    "Opportunity": "Opportunity", "Lead": "Lead", "Quote": "Quote", "Order": "Order",
    "Contract": "Contract", "Product2": "Product2", "Pricebook2": "Pricebook2",
    "Campaign": "Campaign", "Asset": "Asset", "Case": "Case",
}
"""The object a standard relationship (``Owner`` of ``OwnerId``) points at."""

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=[A-Z][a-z])")


def ident(name: str) -> str:
    """``Manager_Approval`` -> ``manager_approval``, ``StageName`` -> ``stage_name``."""
    base = _CAMEL.sub("_", name.strip())
    base = re.sub(r"[^0-9A-Za-z]+", "_", base).strip("_").lower()
    base = re.sub(r"_+", "_", base) or "unnamed"
    return f"x_{base}" if base[0].isdigit() else base


def stage_name(name: str) -> str:
    n = ident(name)
    return f"{n}_stage" if n in RESERVED_STAGES else n


def distinct(names: Iterable[str], to_baton: Callable[[str], str]) -> dict[str, str]:
    """Baton names (``to_baton``) for distinct Salesforce names, that stay distinct: two
    names that read alike (``Fulfil`` and ``fulfil``, ``End`` and ``End_Stage``) would
    make a definition with a duplicate. The first keeps the name; a later one gets the
    first free ``_2``, ``_3``... (free of every name's own Baton name: none is taken from
    another)."""
    ordered = list(dict.fromkeys(names))
    own = {n: to_baton(n) for n in ordered}
    taken = set(own.values())
    out: dict[str, str] = {}
    used: set[str] = set()
    for n in ordered:
        name = own[n]
        if name in used:
            i = 2
            while f"{name}_{i}" in taken:
                i += 1
            name = f"{name}_{i}"
            taken.add(name)
        used.add(name)
        out[n] = name
    return out


def flow_name(api_name: str) -> str:
    """The Baton flow a referenced Salesforce flow becomes: ``salesforce.<ApiName>``."""
    return "salesforce." + re.sub(r"[^0-9A-Za-z_]", "_", api_name.strip())


def object_name(api_name: str) -> str:
    """``Opportunity`` stays; ``Purchase_Request__c`` -> ``Purchase_Request``."""
    base = re.sub(r"__(c|r|x|e|mdt)$", "", api_name.strip())
    base = re.sub(r"[^0-9A-Za-z_]+", "_", base).strip("_") or "Object"
    return f"X{base}" if base[0].isdigit() else base


def field_segment(segment: str) -> tuple[str, str | None]:
    """One segment of a record path -> (Baton field name, object it refers to or None).

    ``AccountId`` and ``Account`` are the same ref field ``account`` (the id, and the way
    to the related record); ``Manager__c``/``Manager__r`` likewise; ``Amount__c`` is
    ``amount``; ``Id``, ``CreatedDate``, ``LastModifiedDate`` are built-in fields.
    """
    s = segment.strip()
    if s in BUILTIN_FIELDS:
        return BUILTIN_FIELDS[s], None
    if s.endswith("__r"):
        rel = s[:-3]
        return ident(rel), object_name(rel)
    if s.endswith("Id") and len(s) > 2 and s[:-2] in RELATIONSHIP_OBJECTS:
        rel = s[:-2]
        return ident(rel), RELATIONSHIP_OBJECTS[rel]
    if s in RELATIONSHIP_OBJECTS:
        return ident(s), RELATIONSHIP_OBJECTS[s]
    return ident(re.sub(r"__c$", "", s)), None


def relationship_object(segment: str) -> str:
    """The object a relationship segment (not the last of a path) points at."""
    s = segment.strip()
    if s.endswith("__r"):
        return object_name(s[:-3])
    return RELATIONSHIP_OBJECTS.get(s, object_name(s))
