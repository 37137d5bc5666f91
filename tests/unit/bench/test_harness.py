"""The benchmark harness: discovery, the report, and a tiny end-to-end run on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import discover, main
from bench.report import Report, Target, percentile


def test_discover_finds_core_first_and_skips_the_harness() -> None:
    names = list(discover())
    assert names[0] == "core"
    assert not {"report", "context", "__main__"} & set(names)


def test_percentile_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 201)]
    assert percentile(samples, 50) == 100
    assert percentile(samples, 99) == 198
    assert percentile([7.0], 99) == 7


def test_report_renders_ratio_and_checks_targets() -> None:
    report = Report()
    for backend, rate in (("sqlite", 500.0), ("postgresql", 300.0)):
        report.begin(backend)
        report.section = "core"
        report.metric("creates/s", rate, "req/s", target=Target(400, backend="postgresql"))
    table = report.render()
    assert "0.60x" in table
    assert "MISSED" in table
    assert report.failures() == ["core: creates/s [postgresql] = 300.0 req/s"]


def test_bench_tiny_run_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["--only", "core", "--backend", "sqlite", "--scale", "0.01", "--json", str(out)])
    assert code == 0
    figures = {f["name"]: f["values"] for f in json.loads(out.read_text())["figures"]}
    assert figures["creates/s (1 connection)"]["sqlite"] > 0
    assert figures["read by id server time p99"]["sqlite"] > 0
    assert "transaction resources/s (Bundles of 100)" in figures
    assert "creates/s" in capsys.readouterr().out
