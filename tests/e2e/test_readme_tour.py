"""The README's five-minute tour, run as written (its shell block, against a real server),
so the first thing a new user tries keeps working."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.e2e.procs import RENKEI, REPO, free_port, start_server, stop


def _tour() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Five-minute tour", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "the tour's shell block is missing"
    return found.group(1)


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path / 'tour.db'}",
        "RENKEI_DATA_DIR": str(tmp_path / "data"),
    }
    script = _tour().replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
    script = script.replace(".venv/bin/renkei", RENKEI)
    server = start_server(env, port, tmp_path / "server.log")
    try:
        done = subprocess.run(
            ["bash", "-euc", script],
            cwd=tmp_path,
            env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop(server)
    out = done.stdout
    assert done.returncode == 0, f"{out[-2000:]}\n{done.stderr[-2000:]}"
    assert '"resourceType": "CapabilityStatement"' in out
    assert '"resourceType": "Composition"' in out  # the summary document's first entry
    assert (
        (tmp_path / "summary.html")
        .read_text(encoding="utf-8")
        .lower()
        .startswith("<!doctype html>")
    )
    assert '"code":"urgent-call"' in out.replace(" ", "")  # SpO2 88 % opened an urgent call
    assert "HTTP/1.1 401" in out.rstrip().splitlines()[-1]  # curl -i without a token
