"""``Patient/[id]/$summary`` and the timeline (経過) for a patient with a year of history.

One deterministic patient with about 2,000 resources, as a year of home care leaves them:
problems (active and resolved), allergies, a year of prescriptions, daily vital signs with
JP Core LOINC codes (体温 8310-5, 血圧 85354-9, SpO2 2708-6, 脈拍 8867-4, 体重 29463-7),
monthly laboratory results, care level and ADL, advance care planning, family contacts,
a care team with a visiting-nurse station and a pharmacy, the sharing consent, and the
team's status updates (Communication). Ten other patients of the same clinic and team
(500 resources each) and a small patient (about 25 resources, renkei.demo) are loaded
beside it, all by transaction Bundles over HTTP as the clinic.

Then, over real HTTP (one keep-alive connection), server time from ``Server-Timing``:

- ``$summary`` as the clinic's back end (owner) and as a partner station's nurse (who sees
  the patient through the care team and the consent): median, p95, p99;
- the timeline's first page and a later page (page 10, by cursor) as that nurse;
- ``$summary`` of the small patient.

``--set summary_resources=N`` and ``--set summary_neighbours=N`` change the patient's size
and the number of other patients (``--scale`` below 1 shrinks both). Target (issue 8):
$summary p95 <= 50 ms for 2,000 resources, and the same for a timeline page.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from bench.context import BenchContext
from bench.report import Report, Target, percentile
from renkei.api.timing import app_duration_ms
from renkei.demo.clinical import (
    ACP_WISHES,
    ALLERGIES,
    CARE_LEVELS,
    CLINICAL,
    CONSENT_SCOPE,
    ICD10,
    LOINC,
    NOTES,
    OBS_CAT,
    PROBLEMS,
    UCUM,
    patient_entries,
)
from renkei.demo.generate import patient
from renkei.fhir.capability import RENKEI_CODESYSTEM

JST = ZoneInfo("Asia/Tokyo")
#: the data set is "the year up to now" (to the hour): the server's clock reads it as
#: current, so what counts as recent is what it would be in use
NOW = datetime.now(JST).replace(minute=0, second=0, microsecond=0)
SIZE = 2000
#: other patients of the same clinic and care team, and their size
NEIGHBOURS = 10
NEIGHBOUR_SIZE = 500
TARGET_P95_MS = 50.0
BUNDLE_SIZE = 250
TIMELINE_PAGE = 20
LATER_PAGE = 10
FHIR_JSON = {"Content-Type": "application/fhir+json"}
_ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
#: (LOINC, 表示名, unit, low, high, decimals): monthly laboratory results
LABS = [
    ("2160-0", "クレアチニン", "mg/dL", 0.6, 1.8, 2),
    ("4548-4", "HbA1c", "%", 5.5, 8.5, 1),
    ("33762-6", "NT-proBNP", "pg/mL", 150, 2500, 0),
    ("2823-3", "カリウム", "mmol/L", 3.4, 5.4, 1),
]


# -- the data set ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Partners:
    """The organisations on the patient's care team besides the clinic."""

    nursing: str
    pharmacy: str


def history(
    rng: random.Random, subject: str, clinic: str, partners: Partners, size: int = SIZE
) -> list[dict[str, Any]]:
    """``size`` resources (at least 72) about ``subject`` (``Patient/<id>``).

    Fixed parts first (problems, allergies, prescriptions, labs, care level, ACP, contacts,
    care team, consent); a sixth of the rest are status updates, the others daily vitals.
    Deterministic for a given ``rng`` state.
    """
    out = _team(subject, clinic, partners)  # first: the consent refers to the team's urn
    out += _problems(rng, subject)
    out += _allergies(subject)
    out += _prescriptions(rng, subject, clinic)
    months = 12 if size >= 500 else 2
    out += _labs(rng, subject, months)
    out += _function(rng, subject)
    out += _planning(subject)
    out += _contacts(subject)
    rest = max(8, size - len(out))
    notes = rest // 6
    out += _notes(rng, subject, partners, notes)
    out += _vitals(rng, subject, rest - notes)
    return out


def _problems(rng: random.Random, subject: str) -> list[dict[str, Any]]:
    out = []
    for n, (icd, name, _) in enumerate(PROBLEMS):
        status = "active" if n < 7 else "resolved"
        onset = NOW - timedelta(days=rng.randint(30, 3000))
        out.append(
            {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
                "code": {"coding": [{"system": ICD10, "code": icd, "display": name}], "text": name},
                "subject": {"reference": subject},
                "onsetDateTime": onset.date().isoformat(),
            }
        )
    return out


def _allergies(subject: str) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": _ALLERGY_CLINICAL, "code": "active"}]},
            "category": [category],
            "criticality": "high" if category == "medication" else "low",
            "code": {"text": what},
            "patient": {"reference": subject},
            "reaction": [{"manifestation": [{"text": reaction}]}],
        }
        for what, category, reaction in ALLERGIES
    ]


def _prescriptions(rng: random.Random, subject: str, clinic: str) -> list[dict[str, Any]]:
    """Each medicine of the active problems, prescribed every quarter; the last is active."""
    meds = [m for _, _, ms in PROBLEMS[:7] for m in ms]
    out = []
    for quarter in range(4, 0, -1):
        written = NOW - timedelta(days=91 * (quarter - 1) + rng.randint(0, 10))
        for med, how in meds:
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "status": "active" if quarter == 1 else "completed",
                    "intent": "order",
                    "medicationCodeableConcept": {"text": med},
                    "subject": {"reference": subject},
                    "authoredOn": written.isoformat(timespec="seconds"),
                    "requester": {"reference": clinic},
                    "dosageInstruction": [{"text": how}],
                }
            )
    return out


def _observation(
    subject: str, category: str | None, code: dict[str, Any], when: datetime
) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "status": "final"}
    if category:
        body["category"] = [{"coding": [{"system": OBS_CAT, "code": category}]}]
    body["code"] = code
    body["subject"] = {"reference": subject}
    body["effectiveDateTime"] = when.isoformat(timespec="seconds")
    return body


def _quantity(value: float, unit: str, ucum: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": ucum}


def _loinc(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


def _labs(rng: random.Random, subject: str, months: int) -> list[dict[str, Any]]:
    out = []
    for month in range(months, 0, -1):
        when = NOW - timedelta(days=30 * month - 3, hours=rng.randint(0, 3))
        for code, name, unit, low, high, places in LABS:
            body = _observation(subject, "laboratory", _loinc(code, name), when)
            body["valueQuantity"] = _quantity(round(rng.uniform(low, high), places), unit, unit)
            out.append(body)
    return out


def _function(rng: random.Random, subject: str) -> list[dict[str, Any]]:
    """Care level (要介護度) and ADL, assessed every quarter."""
    out = []
    for quarter in range(4, 0, -1):
        when = NOW - timedelta(days=91 * quarter - 5)
        for code, display, value in (
            ("care-level", "要介護度", CARE_LEVELS[min(4, 5 - quarter)]),
            ("adl", "ADL", f"Barthel Index {rng.randrange(20, 70, 5)}点"),
        ):
            coded = {"coding": [{"system": RENKEI_CODESYSTEM, "code": code, "display": display}]}
            body = _observation(subject, None, coded, when)
            body["effectiveDateTime"] = when.date().isoformat()
            body["valueCodeableConcept"] = {"text": value}
            out.append(body)
    return out


def _planning(subject: str) -> list[dict[str, Any]]:
    """Two ACP conversations (人生会議): the wishes were revisited after six months."""
    return [
        {
            "resourceType": "Consent",
            "status": status,
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "adr"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"reference": subject},
            "dateTime": (NOW - timedelta(days=days)).isoformat(timespec="seconds"),
            "policyRule": {"text": "人生会議（ACP）での本人の意思"},
            "provision": {"code": [{"text": w} for w in wishes]},
        }
        for status, days, wishes in (
            ("inactive", 300, ACP_WISHES[2]),
            ("active", 120, ACP_WISHES[0]),
        )
    ]


def _contacts(subject: str) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "RelatedPerson",
            "active": True,
            "patient": {"reference": subject},
            "relationship": [
                {
                    "coding": [{"system": _ROLE_CODE, "code": code}],
                    "text": relation,
                }
            ],
            "name": [{"text": f"ベンチ {relation}"}],
            "telecom": [{"system": "phone", "value": phone, "rank": rank}],
        }
        for rank, (relation, code, phone) in enumerate(
            (("長女", "DAU", "090-1234-5678"), ("長男", "SON", "080-2345-6789")), start=1
        )
    ]


def _team(subject: str, clinic: str, partners: Partners) -> list[dict[str, Any]]:
    """The active care team and the patient's consent to share with it (team first: the
    consent names it by a urn:uuid the transaction resolves)."""
    team_url = "urn:uuid:5e0c1c6e-0d7b-4c59-9a39-000000000001"
    start = (NOW - timedelta(days=365)).date().isoformat()
    members = [clinic, partners.nursing, partners.pharmacy]
    return [
        {
            "resourceType": "CareTeam",
            "_fullUrl": team_url,
            "status": "active",
            "name": "在宅ケアチーム",
            "subject": {"reference": subject},
            "period": {"start": start},
            "participant": [{"member": {"reference": org}} for org in members],
        },
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"reference": subject},
            "dateTime": (NOW - timedelta(days=365)).isoformat(timespec="seconds"),
            "organization": [{"reference": clinic}],
            "policyRule": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
                ]
            },
            "provision": {
                "type": "permit",
                "period": {"start": start},
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                    "code": "IRCP",
                                }
                            ]
                        },
                        "reference": {"reference": team_url},
                    }
                ],
            },
        },
    ]


def _notes(
    rng: random.Random, subject: str, partners: Partners, count: int
) -> list[dict[str, Any]]:
    out = []
    for n in range(count, 0, -1):
        sent = NOW - timedelta(minutes=int(365 * 24 * 60 * n / count) + rng.randint(0, 120))
        out.append(
            {
                "resourceType": "Communication",
                "status": "completed",
                "subject": {"reference": subject},
                "sender": {"reference": rng.choice([partners.nursing, partners.pharmacy])},
                "sent": sent.isoformat(timespec="seconds"),
                "payload": [{"contentString": rng.choice(NOTES)}],
            }
        )
    return out


def _vitals(rng: random.Random, subject: str, count: int) -> list[dict[str, Any]]:
    """Daily measurements over the year, four or five at a time (body weight weekly)."""
    out: list[dict[str, Any]] = []
    visits = max(1, count // 4)
    for n in range(visits, 0, -1):
        when = NOW - timedelta(minutes=int(365 * 24 * 60 * n / visits) - rng.randint(0, 90))
        temp = _observation(subject, "vital-signs", _loinc("8310-5", "体温"), when)
        temp["valueQuantity"] = _quantity(round(rng.uniform(35.8, 38.2), 1), "℃", "Cel")
        bp = _observation(subject, "vital-signs", _loinc("85354-9", "血圧"), when)
        bp["component"] = [
            {
                "code": _loinc(code, name),
                "valueQuantity": _quantity(value, "mmHg", "mm[Hg]"),
            }
            for code, name, value in (
                ("8480-6", "収縮期血圧", rng.randint(100, 160)),
                ("8462-4", "拡張期血圧", rng.randint(55, 95)),
            )
        ]
        spo2 = _observation(subject, "vital-signs", _loinc("2708-6", "SpO2"), when)
        spo2["valueQuantity"] = _quantity(rng.randint(90, 99), "%", "%")
        pulse = _observation(subject, "vital-signs", _loinc("8867-4", "脈拍"), when)
        pulse["valueQuantity"] = _quantity(rng.randint(56, 104), "/min", "/min")
        out += [temp, bp, spo2, pulse]
        if n % 7 == 0 and len(out) < count:
            weight = _observation(subject, "vital-signs", _loinc("29463-7", "体重"), when)
            weight["valueQuantity"] = _quantity(round(rng.uniform(38.0, 46.0), 1), "kg", "kg")
            out.append(weight)
    return out[-count:] if len(out) > count else out


# -- loading ---------------------------------------------------------------------------------


def _transaction(resources: list[dict[str, Any]]) -> bytes:
    entries = []
    for body in resources:
        body = dict(body)
        entry: dict[str, Any] = {"request": {"method": "POST", "url": body["resourceType"]}}
        full_url = body.pop("_fullUrl", None)
        if full_url:
            entry["fullUrl"] = full_url
        entry["resource"] = body
        entries.append(entry)
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _post_bundle(client: httpx.Client, body: bytes) -> dict[str, Any]:
    resp = client.post("", content=body, headers=FHIR_JSON)
    if resp.status_code != 200:
        raise RuntimeError(f"transaction failed: {resp.status_code} {resp.text[:300]}")
    result: dict[str, Any] = resp.json()
    return result


def _create(client: httpx.Client, body: dict[str, Any]) -> str:
    resp = client.post(
        f"/{body['resourceType']}",
        content=orjson.dumps(body),
        headers={**FHIR_JSON, "Prefer": "return=minimal"},
    )
    if resp.status_code != 201:
        raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
    return resp.headers["Location"].split(f"/{body['resourceType']}/", 1)[1].split("/", 1)[0]


def _owned_patient(ctx: BenchContext, rng: random.Random, n: int) -> dict[str, Any]:
    body = patient(rng, n)
    body["managingOrganization"] = {"reference": f"Organization/{ctx.org_id}"}
    return body


@dataclass(frozen=True)
class Loaded:
    big: str
    small: str
    #: resources of the big patient (with the Patient)
    size: int
    #: resources loaded in all (big, small and the neighbours), and how long it took
    resources: int
    seconds: float
    #: user id of the partner station's nurse
    nurse: str


def load(ctx: BenchContext, size: int, neighbours: int, neighbour_size: int) -> Loaded:
    """The big patient, ``neighbours`` other patients of the same clinic and care team with
    ``neighbour_size`` resources each, and the small patient; through HTTP as the clinic.

    The neighbours are there because a search's access check may cost in proportion to
    everything the caller may see, not only to the patient asked about.
    """
    from renkei.auth import service as auth_service

    rng = random.Random(ctx.seed + 8)
    svc = ctx.services()
    with svc.db.session(write=True) as session:
        nursing = auth_service.create_organization(
            session, svc.auth, svc.engine, name="ベンチ訪問看護ステーション", kind="nursing"
        )
        pharmacy = auth_service.create_organization(
            session, svc.auth, svc.engine, name="ベンチ薬局", kind="pharmacy"
        )
        nurse = auth_service.create_user(
            session,
            svc.auth,
            svc.engine,
            org_id=nursing,
            name="訪問 看護師",
            login=f"bench-nurse-{rng.getrandbits(32):08x}",
            role="nurse",
            password=f"Bench-{rng.getrandbits(64):016x}-pw",
        )
    partners = Partners(f"Organization/{nursing}", f"Organization/{pharmacy}")
    started = time.perf_counter()
    loaded = 0
    with ctx.client() as client:
        for n in range(neighbours):
            _, count = _with_history(client, ctx, rng, 900_100 + n, partners, neighbour_size)
            loaded += count
        big, big_size = _with_history(client, ctx, rng, 900_001, partners, size)
        small, small_size = _small_patient(client, ctx, rng)
    if ctx.backend == "postgresql":
        # Fresh statistics, as autovacuum gives a live server (the test server runs without
        # it): with none, the planner takes 2,000 rows for 1 and $summary takes 0.5-1 s.
        with svc.db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    total = loaded + big_size + small_size
    return Loaded(big, small, big_size, total, time.perf_counter() - started, nurse.id)


def _with_history(
    client: httpx.Client,
    ctx: BenchContext,
    rng: random.Random,
    n: int,
    partners: Partners,
    size: int,
) -> tuple[str, int]:
    """A patient of the clinic and its :func:`history`: ``size`` resources with the
    Patient; returns (id, resources loaded)."""
    pid = _create(client, _owned_patient(ctx, rng, n))
    clinic = f"Organization/{ctx.org_id}"
    resources = history(rng, f"Patient/{pid}", clinic, partners, size - 1)
    for i in range(0, len(resources), BUNDLE_SIZE):
        _post_bundle(client, _transaction(resources[i : i + BUNDLE_SIZE]))
    return pid, 1 + len(resources)


def _small_patient(client: httpx.Client, ctx: BenchContext, rng: random.Random) -> tuple[str, int]:
    """A patient of the demo's size (renkei.demo.clinical), in one transaction."""
    body = _owned_patient(ctx, rng, 900_002)
    key = "5e0c1c6e-0d7b-4c59-9a39-000000000002"
    clinic = f"Organization/{ctx.org_id}"
    entries = [
        {
            "fullUrl": f"urn:uuid:patient-{key}",
            "resource": body,
            "request": {"method": "POST", "url": "Patient"},
        },
        *patient_entries(rng, key, body, clinic=clinic, team=[], now=NOW),
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    done = _post_bundle(client, orjson.dumps(bundle))
    location = done["entry"][0]["response"]["location"]
    return location.split("Patient/", 1)[1].split("/", 1)[0], len(entries)


def _nurse_client(ctx: BenchContext, user_id: str) -> httpx.Client:
    from renkei.auth import service as auth_service

    svc = ctx.services()
    with svc.db.session(write=True) as session:
        issued = auth_service.issue_operator_token(
            session,
            svc.auth,
            user_id=user_id,
            scope="user/*.cruds",
            minutes=24 * 60,
            fhir_base=ctx.base_url,
        )
    return httpx.Client(
        base_url=ctx.base_url,
        timeout=60,
        headers={"Authorization": f"Bearer {issued.token}"},
    )


# -- measuring -------------------------------------------------------------------------------


def _timed_get(client: httpx.Client, url: str, **params: Any) -> tuple[float, Any]:
    resp = client.get(url, params=params or None)
    if resp.status_code != 200:
        raise RuntimeError(f"GET {url} failed: {resp.status_code} {resp.text[:300]}")
    return app_duration_ms(resp.headers.get("server-timing")) or 0.0, resp.json()


def _series(client: httpx.Client, url: str, n: int, **params: Any) -> list[float]:
    for _ in range(min(5, n)):  # warm-up: caches, query plans
        _timed_get(client, url, **params)
    return [_timed_get(client, url, **params)[0] for _ in range(n)]


def _root(ctx: BenchContext) -> str:
    return ctx.base_url.removesuffix("/fhir")


def run(report: Report, ctx: BenchContext) -> None:
    shrink = min(1.0, ctx.scale)  # --scale below 1: a smaller data set too (harness tests)
    size = int(ctx.options.get("summary_resources", SIZE * shrink))
    neighbours = int(ctx.options.get("summary_neighbours", NEIGHBOURS * shrink))
    neighbour_size = int(NEIGHBOUR_SIZE * shrink)
    loaded = load(ctx, max(60, size), neighbours, max(60, neighbour_size))
    report.metric(
        f"load {loaded.resources} resources ({neighbours + 2} patients, Bundles of {BUNDLE_SIZE})",
        loaded.resources / loaded.seconds,
        "res/s",
    )
    n = ctx.count(200, 5)
    target = Target(TARGET_P95_MS, at_most=True)
    with ctx.client() as client:
        owner = _series(client, f"/Patient/{loaded.big}/$summary", n)
        small = _series(client, f"/Patient/{loaded.small}/$summary", n)
    with _nurse_client(ctx, loaded.nurse) as nurse:
        shared = _series(nurse, f"/Patient/{loaded.big}/$summary", n)
        first, later = _timeline(ctx, nurse, loaded.big, n)
    label = f"{loaded.size} resources"
    _latency(report, f"$summary, {label}, clinic back end", owner, target)
    _latency(report, f"$summary, {label}, partner nurse", shared, target)
    _latency(report, f"timeline page 1 ({TIMELINE_PAGE} items), partner nurse", first, target)
    if later:
        _latency(report, f"timeline page {LATER_PAGE}, partner nurse", later, target)
    _latency(report, "$summary, small patient (~25 resources)", small, None)


def _timeline(
    ctx: BenchContext, nurse: httpx.Client, pid: str, n: int
) -> tuple[list[float], list[float]]:
    """Server times of the first page and of page LATER_PAGE (its cursor, fetched again).

    The nurse marks the newest item as read first, so the read-receipt lookup has a row.
    """
    root = _root(ctx)
    url = f"{root}/patients/{pid}/timeline"
    _, page = _timed_get(nurse, url, count=TIMELINE_PAGE)
    newest = page["items"][0]
    _mark_seen(nurse, root, newest["type"], newest["id"])
    first = _series(nurse, url, n, count=TIMELINE_PAGE)
    cursor = page["next_cursor"]
    for _ in range(LATER_PAGE - 2):
        if cursor is None:
            return first, []
        cursor = _timed_get(nurse, url, count=TIMELINE_PAGE, cursor=cursor)[1]["next_cursor"]
    if cursor is None:
        return first, []
    return first, _series(nurse, url, n, count=TIMELINE_PAGE, cursor=cursor)


def _mark_seen(client: httpx.Client, root: str, item_type: str, item_id: str) -> None:
    resp = client.post(f"{root}/timeline/{item_type}/{item_id}/seen")
    if resp.status_code != 200:
        raise RuntimeError(f"mark seen failed: {resp.status_code} {resp.text[:300]}")


def _latency(report: Report, name: str, samples: list[float], target: Target | None) -> None:
    """Median, p95 (with the target) and p99, as three rows."""
    report.metric(f"{name} median", statistics.median(samples), "ms")
    report.metric(f"{name} p95", percentile(samples, 95), "ms", target=target)
    report.metric(f"{name} p99", percentile(samples, 99), "ms")
