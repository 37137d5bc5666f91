"""The demo network seeds a plausible region once, and a second run changes nothing."""

from __future__ import annotations

import sqlalchemy as sa

from renkei.app import Services
from renkei.demo.seed import ORGANIZATIONS, seed_network
from renkei.store.models import resource


def _counts(services: Services) -> dict[str, int]:
    with services.db.session() as session:
        rows = session.execute(
            sa.select(resource.c.res_type, sa.func.count()).group_by(resource.c.res_type)
        )
        return {t: n for t, n in rows}


def test_seed_network_is_plausible_and_idempotent(services: Services) -> None:
    with services.db.session(write=True) as session:
        net, created = seed_network(services, session, patients=6)
    counts = _counts(services)
    assert counts["Organization"] == len(ORGANIZATIONS) == 12
    assert counts["Patient"] == 6 and len(net.patients) == 6
    assert counts["CareTeam"] == 6
    assert counts["Consent"] >= 6  # one sharing consent each, plus ACP wishes
    assert counts["Observation"] >= 6 * 13
    assert created == sum(counts.values())
    assert len(net.of_kind("clinic")) == 4 and len(net.of_kind("facility")) == 3
    with services.db.session(write=True) as session:
        again, created_again = seed_network(services, session, patients=6)
    assert created_again == 0
    assert again.patients == net.patients
    assert _counts(services) == counts
