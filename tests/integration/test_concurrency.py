"""Concurrent writers on one resource, on SQLite and PostgreSQL: consecutive versions, no
lost update, and exactly one winner among If-Match writers (http.html#concurrency)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from renkei.app import Services
from renkei.auth.principal import OPERATOR
from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext

THREADS = 4
UPDATES_EACH = 8


def _call(services: Services, method: str, path: str, body: Any = None, **headers: str) -> Any:
    req = FhirRequest(
        method,
        path,
        headers={k.lower().replace("_", "-"): v for k, v in headers.items()},
        body=body,
        content_type="application/json-patch+json" if method == "PATCH" else "",
        context=RequestContext(principal=OPERATOR),
    )
    with services.db.session(write=method != "GET") as session:
        resp: FhirResponse = services.engine.handle(session, req)
        if resp.status >= 400:
            session.rollback()
        return resp


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def _created(services: Services) -> dict[str, Any]:
    resp = _call(services, "POST", "Patient", {"resourceType": "Patient", "gender": "female"})
    assert resp.status == 201
    body: dict[str, Any] = resp.body
    return body


def test_concurrent_updates_make_consecutive_versions(services: Services) -> None:
    created = _created(services)
    path = f"Patient/{created['id']}"
    statuses: list[int] = []

    def work(n: int) -> None:
        for k in range(UPDATES_EACH):
            body = {**created, "name": [{"family": f"t{n}", "given": [f"u{k}"]}]}
            statuses.append(_call(services, "PUT", path, body).status)

    _in_threads(THREADS, work)
    assert Counter(statuses) == {200: THREADS * UPDATES_EACH}
    total = 1 + THREADS * UPDATES_EACH
    current = _call(services, "GET", path).body
    assert current["meta"]["versionId"] == str(total)
    history = _call(services, "GET", f"{path}/_history", None).body
    versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
    assert versions == list(range(1, total + 1))
    # every write is in the history: none was overwritten by another
    names = {(e["resource"]["name"][0]["family"], e["resource"]["name"][0]["given"][0])
             for e in history["entry"] if "name" in e["resource"]}  # fmt: skip
    assert len(names) == THREADS * UPDATES_EACH


def test_concurrent_patches_all_apply(services: Services) -> None:
    """Read-modify-write inside the server: every patch lands, none is lost."""
    created = _created(services)
    path = f"Patient/{created['id']}"
    created_name = _call(
        services, "PATCH", path, [{"op": "add", "path": "/name", "value": [{"text": "seed"}]}]
    )
    assert created_name.status == 200
    statuses: list[int] = []

    def work(n: int) -> None:
        for k in range(UPDATES_EACH):
            op = [{"op": "add", "path": "/name/-", "value": {"text": f"{n}-{k}"}}]
            statuses.append(_call(services, "PATCH", path, op).status)

    _in_threads(THREADS, work)
    assert Counter(statuses) == {200: THREADS * UPDATES_EACH}
    current = _call(services, "GET", path).body
    assert len(current["name"]) == 1 + THREADS * UPDATES_EACH
    assert current["meta"]["versionId"] == str(2 + THREADS * UPDATES_EACH)


def test_concurrent_if_match_writers_exactly_one_wins(services: Services) -> None:
    created = _created(services)
    path = f"Patient/{created['id']}"
    results: dict[int, int] = {}

    def work(n: int) -> None:
        body = {**created, "gender": "male", "name": [{"family": f"writer-{n}"}]}
        results[n] = _call(services, "PUT", path, body, if_match='W/"1"').status

    _in_threads(THREADS * 2, work)
    assert sorted(results.values()) == [200] + [412] * (THREADS * 2 - 1)
    winner = next(n for n, status in results.items() if status == 200)
    current = _call(services, "GET", path).body
    assert current["meta"]["versionId"] == "2"
    assert current["name"][0]["family"] == f"writer-{winner}"


def test_concurrent_if_match_deletes_exactly_one_wins(services: Services) -> None:
    created = _created(services)
    path = f"Patient/{created['id']}"
    results: list[int] = []
    _in_threads(
        THREADS, lambda n: results.append(_call(services, "DELETE", path, if_match='W/"1"').status)
    )
    assert sorted(results) == [200] + [412] * (THREADS - 1)
    assert _call(services, "GET", path).status == 410
