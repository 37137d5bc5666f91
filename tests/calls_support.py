"""Shared set-up for urgent-call tests: a small network, a static roster, a driver.

The network: clinic A (in rotation group g1) with primary doctor A; clinic B (no group)
with doctor B; the group's duty doctor, back-up and coordinator; patient 1 cared for by
clinic A and patient 2 by clinic B, each through an active CareTeam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from renkei.app import Services
from renkei.auth.principal import OPERATOR, Principal
from renkei.calls import RecordingChannel, run_once, service
from renkei.calls.ports import (
    PRIMARY_DOCTOR_CODE,
    CallPorts,
    EscalationPolicy,
    FhirPatientDirectory,
    RecordingNotifier,
    SharingDutyAccess,
)
from renkei.calls.static_roster import StaticDuty, StaticDutyResolver, StaticGroup
from renkei.calls.worker import WorkerReport
from renkei.clock import ManualClock
from renkei.fhir.capability import RENKEI_CODESYSTEM
from renkei.fhir.context import FhirRequest, RequestContext

TOKYO = ZoneInfo("Asia/Tokyo")


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def fhir(services: Services, method: str, path: str, body: Any = None, **headers: str) -> Any:
    with services.db.session(write=True) as session:
        resp = services.engine.handle(
            session,
            FhirRequest(
                method, path, body=body, headers=headers, context=RequestContext(principal=OPERATOR)
            ),
        )
        assert resp.status < 400, resp.body
        return resp.body


@dataclass
class Network:
    clinic_a: str
    clinic_b: str
    doctor_a: str
    doctor_b: str
    duty: str
    backup: str
    coordinator: str
    other: str
    patient_1: str
    patient_2: str
    nurse: str


def seed_network(services: Services) -> Network:
    def create(body: dict[str, Any]) -> str:
        out = fhir(services, "POST", body["resourceType"], body)
        return f"{out['resourceType']}/{out['id']}"

    def org(name: str) -> str:
        return create({"resourceType": "Organization", "name": name, "active": True})

    def role(org_ref: str, phone: str) -> str:
        return create(
            {
                "resourceType": "PractitionerRole",
                "active": True,
                "organization": {"reference": org_ref},
                "telecom": [{"system": "phone", "value": phone}],
            }
        )

    clinic_a, clinic_b, station = org("A在宅クリニック"), org("B診療所"), org("訪問看護ST")
    doctor_a, doctor_b = role(clinic_a, "090-0000-0001"), role(clinic_b, "090-0000-0002")
    duty, backup = role(clinic_b, "090-0000-0003"), role(clinic_a, "090-0000-0004")
    coordinator, other = role(clinic_a, "090-0000-0005"), role(clinic_a, "090-0000-0006")
    nurse = role(station, "090-0000-0007")

    def patient(name: str, doctor: str, clinic: str) -> str:
        ref = create(
            {
                "resourceType": "Patient",
                "name": [{"family": name}],
                "managingOrganization": {"reference": clinic},
            }
        )
        create(
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": {"reference": ref},
                "participant": [
                    {
                        "role": [
                            {"coding": [{"system": RENKEI_CODESYSTEM, "code": PRIMARY_DOCTOR_CODE}]}
                        ],
                        "member": {"reference": doctor},
                        "onBehalfOf": {"reference": clinic},
                    },
                    {"member": {"reference": nurse}},
                ],
            }
        )
        return ref

    return Network(
        clinic_a=clinic_a,
        clinic_b=clinic_b,
        doctor_a=doctor_a,
        doctor_b=doctor_b,
        duty=duty,
        backup=backup,
        coordinator=coordinator,
        other=other,
        patient_1=patient("山田", doctor_a, clinic_a),
        patient_2=patient("佐藤", doctor_b, clinic_b),
        nurse=nurse,
    )


def roster(
    net: Network, *, timeout: timedelta = timedelta(minutes=5), rounds: int = 1
) -> StaticDutyResolver:
    return StaticDutyResolver(
        groups=[
            StaticGroup(
                id="g1",
                clinics=frozenset({net.clinic_a}),
                duties=[StaticDuty(primary=net.duty, backup=net.backup)],
                policy=EscalationPolicy(
                    ack_timeout=timeout, coordinator=net.coordinator, max_rounds=rounds
                ),
            )
        ]
    )


def principal_for(role_ref: str, org_ref: str | None = None, **extra: Any) -> Principal:
    return Principal(
        subject=f"user-{role_ref.split('/')[1][:8]}",
        kind="user",
        role=extra.pop("role", "doctor"),
        practitioner_role_id=role_ref,
        organization_id=org_ref.split("/")[1] if org_ref else None,
        scopes=extra.pop("scopes", frozenset({"user/*.cruds"})),
        **extra,
    )


@dataclass
class CallDriver:
    """Drives calls like the HTTP layer and the worker would, with a ManualClock."""

    services: Services
    clock: ManualClock
    net: Network
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    channel: RecordingChannel = field(default_factory=RecordingChannel)

    def __post_init__(self) -> None:
        runtime = self.runtime
        runtime.ports = CallPorts(
            duty=roster(self.net),
            directory=FhirPatientDirectory(),
            notifier=self.notifier,
            access=SharingDutyAccess(),
        )
        runtime.channels = {self.channel.name: self.channel}

    @property
    def runtime(self) -> service.CallRuntime:
        assert self.services.calls is not None
        return self.services.calls

    def use_roster(self, **kwargs: Any) -> None:
        self.runtime.ports.duty = roster(self.net, **kwargs)

    def raise_call(
        self,
        patient: str | None = None,
        priority: str = "stat",
        *,
        by: Principal | None = None,
        key: str | None = None,
        callback: str | None = "090-9999-0000",
    ) -> dict[str, Any]:
        by = by or principal_for(self.net.nurse)
        view, _created = service.create_call(
            self.runtime,
            self.services.db.session,
            self.clock,
            by,
            service.NewCall(
                patient=patient or self.net.patient_1,
                reason="SpO2 88%, 呼吸苦",
                priority=priority,
                callback=callback,
            ),
            key,
            "http://testserver/fhir",
        )
        return view

    def act(self, call_id: str, who: Principal, action: str, **args: Any) -> dict[str, Any]:
        with self.services.db.session(write=True) as session:
            return service.act(self.runtime, session, self.clock, call_id, who, action, args)

    def run(self) -> WorkerReport:
        return run_once(self.services.db.session, self.clock, self.runtime)

    def advance(self, **kwargs: float) -> WorkerReport:
        self.clock.advance(**kwargs)
        return self.run()

    def call(self, call_id: str) -> dict[str, Any]:
        operator = OPERATOR
        with self.services.db.session() as session:
            return service.get_call(session, call_id, operator)

    def task(self, call_id: str) -> dict[str, Any]:
        body: dict[str, Any] = fhir(self.services, "GET", f"Task/{call_id}")
        return body

    def kinds(self, call_id: str) -> list[str]:
        return [e["kind"] for e in self.call(call_id)["timeline"] if e["kind"] != "published"]

    def paged(self, call_id: str) -> list[str]:
        return [e["target"] for e in self.call(call_id)["timeline"] if e["kind"] == "notified"]

    def may_read(self, role: str, org: str, patient: str) -> bool:
        """Whether a user of ``role`` at ``org`` may read ``patient`` under the production
        sharing policy now (the services of these tests allow everything)."""
        from renkei.access import SharingPolicy

        who = principal_for(role, org)
        with self.services.db.session() as session:
            stored = self.services.engine.repository(session).read(*patient.split("/"))
            return SharingPolicy(self.clock).can_read(
                session, RequestContext(principal=who), stored
            )


def install_test_tokens(services: Services, tokens: dict[str, Principal]) -> None:
    """TEST ONLY: map ``Authorization: Bearer <token>`` to a Principal.

    The real authenticator (OAuth 2 / SMART) comes from the auth-identity package; tests of
    /oncall/calls only need some caller, so this installs a lookup table on the seam
    ``Services.authenticate``. Never used outside tests.
    """
    from fastapi import Request

    real = services.authenticate

    async def authenticate(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and header[7:].strip() in tokens:
            return tokens[header[7:].strip()]
        # anything else (the suite's own system token, no token) goes to the real checker
        return await real(request) if real is not None else None

    services.authenticate = authenticate
