"""The CapabilityStatement at ``/fhir/metadata``, built from what the engine really serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from renkei import __version__
from renkei.fhir.validate import supported_types

if TYPE_CHECKING:
    from renkei.fhir.engine import FhirEngine

#: The project's own code system; urgent calls are Tasks with code ``urgent-call`` in it.
RENKEI_CODESYSTEM = "https://renkei.example.jp/fhir/CodeSystem/renkei"

_TYPE_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]


def _oauth_uris(base_url: str) -> dict[str, Any]:
    """SMART's oauth-uris extension: where the OAuth endpoints of this server are."""
    root = base_url[: -len("/fhir")] if base_url.endswith("/fhir") else base_url
    return {
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": [
            {"url": name, "valueUri": f"{root}/auth/{path}"}
            for name, path in (
                ("token", "token"),
                ("authorize", "authorize"),
                ("revoke", "revoke"),
                ("introspect", "introspect"),
            )
        ],
    }


def capability_statement(engine: FhirEngine, base_url: str) -> dict[str, Any]:
    resources = []
    search_params = getattr(engine.search, "search_params", None)
    for res_type in sorted(supported_types()):
        if res_type == "Bundle":
            continue
        entry: dict[str, Any] = {
            "type": res_type,
            "interaction": [{"code": code} for code in _TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "local"],
        }
        if search_params is not None:
            entry["searchParam"] = search_params(res_type)
        ops = [
            {
                "name": op.name,
                "definition": op.definition or f"{base_url}/OperationDefinition/{op.name}",
            }
            for op in engine.operations.values()
            if ("type" in op.levels or "instance" in op.levels)
            and (not op.types or res_type in op.types)
        ]
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    system_ops = [
        {
            "name": op.name,
            "definition": op.definition or f"{base_url}/OperationDefinition/{op.name}",
        }
        for op in engine.operations.values()
        if "system" in op.levels
    ]
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": (
            "renkei FHIR R4 server for Japanese home-care networks. Dates and dateTimes "
            "without a time-zone offset are read in Japan Standard Time (+09:00), in the "
            "index and in search values alike (birthdate=1940 is 1940-01-01T00:00+09:00 to "
            "1940-12-31T24:00+09:00). Search pages hold _count entries: "
            f"{engine.settings.default_count} by default, at most {engine.settings.max_count}; "
            "paging links carry an opaque _cursor and stay exact while data changes "
            "(resources created after the first page are not added to later pages). "
            "Without _total, Bundle.total is given when the first page holds every match; "
            "_total=accurate (or estimate) counts every match. String search ignores case, "
            "accents, full/half width and hiragana/katakana (name=やまだ finds ヤマダ and ﾔﾏﾀﾞ). "
            f"Urgent calls are Tasks with code urgent-call in {RENKEI_CODESYSTEM}."
        ),
        "security": {
            "cors": False,
            "extension": [_oauth_uris(base_url)],
            "description": (
                "OAuth 2 bearer tokens with SMART on FHIR v2 scopes; discovery at "
                ".well-known/smart-configuration"
            ),
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
        },
        "resource": resources,
        "interaction": [
            {"code": "transaction"},
            {"code": "batch"},
            {"code": "history-system"},
            {"code": "search-system"},
        ],
    }
    if system_ops:
        rest["operation"] = system_ops
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-30",
        "kind": "instance",
        "software": {"name": "renkei", "version": __version__},
        "implementation": {"description": "renkei", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
    for amend in engine.capability_amenders:
        amend(statement)
    return statement
