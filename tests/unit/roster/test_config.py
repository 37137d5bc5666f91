"""Group definitions: validation with paths, YAML quirks, normalised round trip."""

from __future__ import annotations

from datetime import time

import pytest
import yaml

from renkei.roster.config import config_to_dict, parse_config
from renkei.roster.errors import InvalidConfig
from tests.rosterdata import group_dict


def test_parse_config_round_trips_through_normalised_dict() -> None:
    cfg = parse_config(group_dict())
    assert parse_config(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"clinics": []}, "clinics"),
        ({"coordinator": ""}, "coordinator"),
        ({"rotation": {"primary": {"doctors": ["PractitionerRole/nobody"]}}},
         "rotation.primary.doctors[0]"),
        ({"rotation": {"primary": {"doctors": []}}}, "rotation.primary.doctors"),
        ({"windows": [{"days": ["someday"], "start": "18:00", "end": "09:00"}]},
         "windows[0].days[0]"),
        ({"windows": [{"days": ["mon"], "start": "10:00", "end": "09:00", "end_days_later": 0}]},
         "windows[0].end"),
        ({"closures": [{"name": "x", "from": "2026-08-16", "to": "2026-08-13"}]}, "closures[0].to"),
        ({"closures": [{"name": "x", "from": "12-29", "to": "2027-01-03"}]}, "closures[0]"),
    ],
)  # fmt: skip
def test_parse_config_errors_name_the_field(change: dict, path: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        parse_config(group_dict(**change))
    assert err.value.path == path


def test_parse_config_accepts_yaml_sexagesimal_times() -> None:
    # YAML 1.1 reads an unquoted 18:00 as the integer 1080 (base 60)
    raw = yaml.safe_load("start: 18:00\nend: 09:00\n")
    assert raw == {"start": 1080, "end": "09:00"}  # a leading zero keeps it a string
    cfg = parse_config(group_dict(windows=[{"days": ["mon"], **raw}]))
    assert (cfg.windows[0].start, cfg.windows[0].end) == (time(18), time(9))


def test_parse_config_not_an_object() -> None:
    with pytest.raises(InvalidConfig):
        parse_config(["not", "a", "group"])
