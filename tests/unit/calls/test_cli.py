"""``renkei calls self-check|show --json``: one JSON object, for operators and cron."""

from __future__ import annotations

import json

import pytest

from renkei.cli import main
from tests.calls_support import CallDriver, jst


def test_calls_cli_self_check_and_show(
    driver: CallDriver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RENKEI_DATABASE_URL", str(driver.services.settings.database_url))
    driver.clock.set(jst(2026, 4, 1, 23, 0))  # long past for the CLI's real clock: overdue
    call_id = driver.raise_call()["id"]
    assert main(["calls", "self-check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["count"] == 1
    assert report["overdue"][0]["id"] == call_id
    assert main(["calls", "show", call_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["owner"] == driver.net.duty
    assert "overdue" in [e["kind"] for e in shown["timeline"]]
    assert main(["calls", "show", "nope", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
