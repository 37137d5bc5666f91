"""Group definitions: validation with paths, YAML quirks, normalised round trip."""

from __future__ import annotations

import contextlib
from datetime import time
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from renkei.roster.config import config_to_dict, parse_config
from renkei.roster.errors import InvalidConfig
from tests.rosterdata import group_dict


def test_parse_config_round_trips_through_normalised_dict() -> None:
    cfg = parse_config(group_dict())
    assert parse_config(config_to_dict(cfg)) == cfg
    with_escalation = parse_config(group_dict(escalation={"ack_timeout_minutes": 3}))
    assert with_escalation.escalation is not None
    assert (
        with_escalation.escalation.ack_timeout_minutes,
        with_escalation.escalation.max_rounds,
    ) == (3, 2)
    assert parse_config(config_to_dict(with_escalation)) == with_escalation
    assert cfg.escalation is None


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
        ({"escalation": {"ack_timeout_minutes": 0}}, "escalation.ack_timeout_minutes"),
        ({"escalation": {"max_rounds": "2"}}, "escalation.max_rounds"),
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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["18:00", "mon", "12-29", "2026-01-01", "day"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_parse_config_any_garbage_is_invalid_config_never_a_crash(data: st.DataObject) -> None:
    raw = group_dict()
    paths = [p for p in _paths(raw) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node: Any = raw
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    with contextlib.suppress(InvalidConfig):  # any other exception fails the test
        parse_config(raw)
