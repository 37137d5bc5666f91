"""Date values cover their written precision, zone-less ones in the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from renkei.fhir.search.dates import date_range

JST = ZoneInfo("Asia/Tokyo")


def iso(text: str, zone: ZoneInfo | timezone = JST) -> tuple[str, str]:
    low, high = date_range(text, zone)
    return low.isoformat(), high.isoformat()


def test_date_range_by_precision() -> None:
    assert iso("1940") == ("1940-01-01T00:00:00+09:00", "1940-12-31T23:59:59.999999+09:00")
    assert iso("2024-02") == ("2024-02-01T00:00:00+09:00", "2024-02-29T23:59:59.999999+09:00")
    assert iso("2026-12-31") == (
        "2026-12-31T00:00:00+09:00",
        "2026-12-31T23:59:59.999999+09:00",
    )
    assert iso("2026-04-01T09:30") == (
        "2026-04-01T09:30:00+09:00",
        "2026-04-01T09:30:59.999999+09:00",
    )
    assert iso("2026-04-01T09:30:15") == (
        "2026-04-01T09:30:15+09:00",
        "2026-04-01T09:30:15.999999+09:00",
    )
    assert iso("2026-04-01T09:30:15.123Z") == (
        "2026-04-01T09:30:15.123000+00:00",
        "2026-04-01T09:30:15.123999+00:00",
    )


def test_date_range_offsets_win_over_the_zone() -> None:
    low, _high = date_range("2026-04-01T09:00:00-05:00", JST)
    assert low.utcoffset() == timedelta(hours=-5)
    assert low.astimezone(UTC) == datetime(2026, 4, 1, 14, tzinfo=UTC)
    assert iso("2026-04-01", UTC) == (
        "2026-04-01T00:00:00+00:00",
        "2026-04-01T23:59:59.999999+00:00",
    )


@pytest.mark.parametrize("bad", ["", "20", "1940-13", "2026-02-30", "2026-04-01T25:00", "abc"])
def test_date_range_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        date_range(bad)


def test_date_range_end_of_time() -> None:
    _low, high = date_range("9999", UTC)
    assert high == datetime.max.replace(tzinfo=UTC)
