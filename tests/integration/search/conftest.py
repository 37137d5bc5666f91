"""Helpers for search tests: create resources over HTTP, search, read back ids.

Every test here takes the ``client`` fixture, so it runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

FHIR_JSON = "application/fhir+json"


class Fhir:
    """A thin FHIR client over the ASGI app, for readable tests."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def create(self, body: dict[str, Any]) -> str:
        resp = self.client.post(
            f"/fhir/{body['resourceType']}", json=body, headers={"Content-Type": FHIR_JSON}
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def put(self, body: dict[str, Any]) -> str:
        resp = self.client.put(
            f"/fhir/{body['resourceType']}/{body['id']}",
            json=body,
            headers={"Content-Type": FHIR_JSON},
        )
        assert resp.status_code in (200, 201), resp.text
        return str(resp.json()["id"])

    def search(self, query: str, status: int = 200, **headers: str) -> dict[str, Any]:
        resp = self.client.get(f"/fhir/{query}", headers=headers)
        assert resp.status_code == status, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def ids(self, query: str) -> set[str]:
        """The ids of the matches (mode match) of one search."""
        return set(self.ordered(query))

    def ordered(self, query: str) -> list[str]:
        bundle = self.search(query)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        return [
            e["resource"]["id"]
            for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") == "match"
        ]

    def error(self, query: str, **headers: str) -> str:
        """A search that must fail with 400; returns the diagnostics."""
        body = self.search(query, 400, **headers)
        assert body["resourceType"] == "OperationOutcome"
        return str(body["issue"][0]["diagnostics"])


@pytest.fixture
def fhir(client: TestClient) -> Fhir:
    return Fhir(client)


def patient(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient"}
    body.update(extra)
    return body


def jp_name(kanji_family: str, kanji_given: str, kana_family: str, kana_given: str) -> list[Any]:
    """A JP Core name pair: kanji (IDE) and kana (SYL) representations."""
    ide = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
    return [
        {
            "extension": [{"url": ide, "valueCode": "IDE"}],
            "use": "official",
            "text": f"{kanji_family} {kanji_given}",
            "family": kanji_family,
            "given": [kanji_given],
        },
        {
            "extension": [{"url": ide, "valueCode": "SYL"}],
            "use": "official",
            "text": f"{kana_family} {kana_given}",
            "family": kana_family,
            "given": [kana_given],
        },
    ]


def observation(subject: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
    }
    if subject:
        body["subject"] = {"reference": subject}
    body.update(extra)
    return body


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            url: str = item["url"]
            parts = urlsplit(url)
            return parts.path.removeprefix("/fhir/") + (f"?{parts.query}" if parts.query else "")
    return None


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
