"""Salesforce API names -> Baton names, one rule each, used everywhere the name is read."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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


OBJECT_SUFFIX = re.compile(r"__(c|x|e|mdt)$", re.IGNORECASE)
"""A custom (``__c``), external (``__x``), platform event (``__e``) or custom metadata
(``__mdt``) object's API name ends so; a standard object's (``Account``) does not."""


def object_suffix(api_name: str) -> str:
    """``c`` for ``Vendor__c``, ``""`` for ``Vendor`` (a standard-looking name)."""
    m = OBJECT_SUFFIX.search(api_name.strip())
    return m[1].lower() if m else ""


@dataclass(frozen=True)
class KeptApart:
    """Two Salesforce objects whose API names make one Baton name (``Vendor`` and
    ``Vendor__c``): ``api`` got ``name``, not ``other_name`` (``other_api``'s)."""

    api: str
    name: str
    other_api: str
    other_name: str
    file: str
    line: int


@dataclass
class ObjectNames:
    """The Baton object type name of each Salesforce object, one per object.

    :func:`object_name` drops a custom object's ``__c``, so ``Vendor`` (a standard or
    standard-looking object) and ``Vendor__c`` (a custom one) would both be ``Vendor``: one
    object type holding two objects' fields, and a lookup to either accepting the other's
    records. In Salesforce they are two objects, with their own records, fields and
    permissions, and an admin expects them to stay two, as two fields ``Amount`` and
    ``Amount__c`` do: the standard one keeps the name, the other gets its suffix
    (``Vendor_c``), and :attr:`apart` lists each such pair for the report. Names are given
    once and kept (the flows' conditions are written with them), so every object known
    before the flows are translated is :meth:`add_all`-ed first, standard ones first. API
    names ignore case (``vendor__c`` is ``Vendor__c``)."""

    by_api: dict[str, str] = field(default_factory=dict)  # lower-case API name -> name
    owners: dict[str, str] = field(default_factory=dict)  # lower-case name -> its API name
    apart: list[KeptApart] = field(default_factory=list)

    def add_all(self, apis: Iterable[tuple[str, str, int]]) -> None:
        """Name each (API name, file, line): standard objects first, then by suffix and
        name, so which of two keeps the plain name does not depend on file order."""
        for api, file, line in sorted(apis, key=lambda a: (object_suffix(a[0]) != "",
                                                           object_suffix(a[0]),
                                                           a[0].strip().lower())):
            self.name(api, file, line)

    def keep(self, api: str, name: str) -> bool:
        """Give ``api`` the name ``name`` (a kept object type's, whose ``# Salesforce
        object:`` line names ``api``: importing again keeps the names the project has),
        before any object is named; False (nothing done) when either is named already."""
        key = api.strip().lower()
        if key in self.by_api or name.lower() in self.owners:
            return False
        self.by_api[key] = name
        self.owners[name.lower()] = api.strip()
        return True

    def known(self, api: str) -> str | None:
        """The name of ``api`` if it has one (it is an object of this import), else None."""
        return self.by_api.get(api.strip().lower())

    def name(self, api: str, file: str = "", line: int = 0) -> str:
        """The name of ``api``: given now if it has none (``file``/``line``: where it was
        first seen, for the report)."""
        key = api.strip().lower()
        have = self.by_api.get(key)
        if have is not None:
            return have
        base = object_name(api)
        other = self.owners.get(base.lower())
        name = base
        if other is not None:
            suffix = object_suffix(api)
            stem = f"{base}_{suffix}" if suffix else base
            name, i = (stem, 1) if suffix else (f"{base}_2", 2)
            while name.lower() in self.owners:
                i += 1
                name = f"{stem}_{i}"
            self.apart.append(KeptApart(api.strip(), name, other, self.by_api[other.lower()],
                                        file, line))
        self.by_api[key] = name
        self.owners[name.lower()] = api.strip()
        return name


def relationship_target(segment: str) -> tuple[str, str]:
    """A relationship segment of a record path -> (the lookup field's API name, the API
    name of the object it most likely points at, without the lookup's metadata):
    ``Vendor__r`` -> (``Vendor__c``, ``Vendor__c``), ``Owner``/``OwnerId`` -> (``OwnerId``,
    ``User``), ``Parent`` -> (``ParentId``, ``Parent``)."""
    s = segment.strip()
    if s.endswith("__r"):
        return f"{s[:-3]}__c", f"{s[:-3]}__c"
    rel = s[:-2] if s.endswith("Id") and len(s) > 2 and s[:-2] in RELATIONSHIP_OBJECTS else s
    return f"{rel}Id", RELATIONSHIP_OBJECTS.get(rel, rel)


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

