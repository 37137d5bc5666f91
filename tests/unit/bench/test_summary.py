"""bench/summary.py: the generated history, and a tiny end-to-end run on SQLite."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from bench.__main__ import main
from bench.summary import Partners, history
from renkei.fhir.validate import parse_resource

PARTNERS = Partners("Organization/nursing", "Organization/pharmacy")


def _history(seed: int, size: int) -> list[dict[str, object]]:
    return history(random.Random(seed), "Patient/p1", "Organization/clinic", PARTNERS, size)


def test_history_is_deterministic_with_a_year_of_home_care() -> None:
    resources = _history(1, 2000)
    assert resources == _history(1, 2000)
    assert len(resources) == 2000
    kinds = Counter(str(r["resourceType"]) for r in resources)
    assert kinds["Observation"] > 1500 and kinds["Communication"] > 300
    assert {"Condition", "AllergyIntolerance", "MedicationRequest", "CareTeam"} <= set(kinds)
    assert {"Consent", "RelatedPerson"} <= set(kinds)


def test_history_resources_are_valid_fhir() -> None:
    first_of_each: dict[str, dict[str, object]] = {}
    for body in _history(2, 200):
        first_of_each.setdefault(str(body["resourceType"]), body)
    for res_type, body in first_of_each.items():
        clean = {k: v for k, v in body.items() if k != "_fullUrl"}
        parse_resource(clean, expected_type=res_type)


def test_summary_bench_tiny_run_on_sqlite(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["--only", "summary", "--backend", "sqlite", "--scale", "0.01", "--json", str(out)])
    assert code == 0
    figures = {f["name"]: f["values"] for f in json.loads(out.read_text())["figures"]}
    summary = [name for name in figures if name.startswith("$summary") and name.endswith("p95")]
    assert len(summary) == 3
    assert all(figures[name]["sqlite"] > 0 for name in summary)
    assert figures["timeline page 1 (20 items), partner nurse median"]["sqlite"] > 0
