"""Every official JP Core example is accepted and reads back with the same content.

The examples come from shared/jpcore/examples (see tests/conftest.py for how shared/ is found).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import JPCORE_EXAMPLES

EXAMPLES = sorted(JPCORE_EXAMPLES.glob("*.json")) if JPCORE_EXAMPLES.is_dir() else []
_SERVER_META = ("versionId", "lastUpdated")


def _without_server_meta(body: dict[str, Any]) -> dict[str, Any]:
    """The resource minus what the server owns: id and meta.versionId/lastUpdated."""
    out = {k: v for k, v in body.items() if k != "id"}
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in _SERVER_META}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def test_examples_folder_is_found() -> None:
    assert len(EXAMPLES) >= 38, f"JP Core examples not found under {JPCORE_EXAMPLES}"


def test_jpcore_examples_update_with_their_ids_read_back_unchanged(client: TestClient) -> None:
    """Update-as-create with the example's own id. One test for the folder (a test per file
    would cost a database per file); the assertion lists every file that fails."""
    failures: list[str] = []
    for path in EXAMPLES:
        example = json.loads(path.read_text(encoding="utf-8"))
        url = f"/fhir/{example['resourceType']}/{example['id']}"
        resp = client.put(url, json=example)
        if resp.status_code != 201:
            failures.append(f"{path.name}: PUT {resp.status_code} {resp.text[:300]}")
            continue
        read = client.get(url).json()
        if read.get("id") != example["id"] or (
            _without_server_meta(read) != _without_server_meta(example)
        ):
            failures.append(f"{path.name}: read back differs")
    assert failures == []


def test_jpcore_examples_create_reads_back_unchanged(client: TestClient) -> None:
    """Create (server-assigned id) for the whole folder, in one test to keep the suite fast."""
    for path in EXAMPLES:
        example = json.loads(path.read_text(encoding="utf-8"))
        resp = client.post(f"/fhir/{example['resourceType']}", json=example)
        assert resp.status_code == 201, f"{path.name}: {resp.text}"
        location = resp.headers["Location"].split("/fhir/", 1)[1].rsplit("/_history", 1)[0]
        read = client.get(f"/fhir/{location}").json()
        assert read["id"] != example["id"], path.name
        assert _without_server_meta(read) == _without_server_meta(example), path.name
