"""``renkei roster import|who|list`` on the demo network: one JSON object each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from renkei.cli import main
from renkei.config import Settings
from renkei.demo import seed_demo

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "roster-group.yaml"


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("RENKEI_DATABASE_URL", url)
    monkeypatch.setenv("RENKEI_DATA_DIR", str(tmp_path))
    settings = Settings.from_env()
    from renkei.store.migrate import upgrade

    upgrade(url)
    seed_demo(settings, patients=4)
    return settings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object
    return code, json.loads(out[0])


def test_roster_import_example_then_who(
    demo_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, made = _run(capsys, "roster", "import", str(EXAMPLE), "--json", "--id", "example")
    assert code == 0 and made["ok"] is True
    assert (made["id"], made["clinics"], made["doctors"]) == ("example", 4, 6)
    code, who = _run(
        capsys, "roster", "who", "--group", "example", "--at", "2027-01-01T03:00", "--json"
    )
    assert code == 0 and who["on_duty"] is True
    assert who["primary"]["name"] in {
        "佐藤 一郎",
        "高橋 美咲",
        "鈴木 健",
        "田中 裕子",
        "伊藤 誠",
        "渡辺 聡",
    }
    assert "祝日: 元日" in who["window"]["labels"]
    code, listed = _run(capsys, "roster", "list", "--json")
    assert {g["id"] for g in listed["groups"]} == {"demo-jonan", "example"}


def test_roster_import_errors_are_one_json_object(
    demo_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclinics: []\n", encoding="utf-8")
    code, out = _run(capsys, "roster", "import", str(bad), "--json")
    assert code == 1 and out["ok"] is False and "clinic" in out["error"]
    code, out = _run(capsys, "roster", "who", "--group", "nope", "--json")
    assert code == 1 and out["ok"] is False
    code, out = _run(capsys, "roster", "import", str(tmp_path / "missing.yaml"), "--json")
    assert code == 1 and "cannot read" in out["error"]
