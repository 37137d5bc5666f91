"""Duty windows: crossing midnight and days, holidays turning days into duty, year end."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from renkei.roster.config import parse_config
from renkei.roster.windows import duty_windows
from tests.rosterdata import group_dict

TOKYO = ZoneInfo("Asia/Tokyo")


def _local(windows: list, tz: ZoneInfo = TOKYO) -> list[tuple[str, str]]:
    return [
        (
            w.start.astimezone(tz).strftime("%m-%d %H:%M"),
            w.end.astimezone(tz).strftime("%m-%d %H:%M"),
        )
        for w in windows
    ]


def test_duty_windows_weekday_night_crosses_midnight() -> None:
    cfg = parse_config(group_dict())
    # Tue 2026-04-07 09:00 .. Wed 09:00: one night window 18:00 -> 09:00 next day
    out = duty_windows(
        cfg, datetime(2026, 4, 7, 9, tzinfo=TOKYO), datetime(2026, 4, 8, 9, tzinfo=TOKYO)
    )
    assert _local(out) == [("04-07 18:00", "04-08 09:00")]
    assert out[0].labels == ("平日夜間",)


def test_duty_windows_weekend_runs_saturday_to_monday() -> None:
    cfg = parse_config(group_dict())
    out = duty_windows(
        cfg, datetime(2026, 4, 10, 12, tzinfo=TOKYO), datetime(2026, 4, 13, 12, tzinfo=TOKYO)
    )
    assert _local(out) == [("04-10 18:00", "04-11 09:00"), ("04-11 13:00", "04-13 09:00")]


def test_duty_windows_golden_week_2026_merges_into_one_window() -> None:
    cfg = parse_config(group_dict())
    # Sat 5/2 13:00 .. 5/3 (Sun, 憲法記念日), 5/4, 5/5, 5/6 振替休日 -> Thu 5/7 09:00
    out = duty_windows(
        cfg, datetime(2026, 5, 2, 12, tzinfo=TOKYO), datetime(2026, 5, 7, 12, tzinfo=TOKYO)
    )
    assert _local(out) == [("05-02 13:00", "05-07 09:00")]
    assert "祝日: 憲法記念日 振替休日" in out[0].labels


def test_duty_windows_citizens_holiday_2026_is_duty_all_day() -> None:
    cfg = parse_config(group_dict())
    out = duty_windows(
        cfg, datetime(2026, 9, 22, 12, tzinfo=TOKYO), datetime(2026, 9, 22, 13, tzinfo=TOKYO)
    )
    assert _local(out) == [("09-22 12:00", "09-22 13:00")]
    assert "祝日: 国民の休日" in out[0].labels


def test_duty_windows_ordinary_weekday_daytime_is_not_duty() -> None:
    cfg = parse_config(group_dict())
    assert (
        duty_windows(
            cfg, datetime(2026, 9, 24, 9, tzinfo=TOKYO), datetime(2026, 9, 24, 18, tzinfo=TOKYO)
        )
        == []
    )


def test_duty_windows_year_end_2026_one_window_to_january_4() -> None:
    cfg = parse_config(group_dict())
    out = duty_windows(
        cfg, datetime(2026, 12, 28, 12, tzinfo=TOKYO), datetime(2027, 1, 5, 12, tzinfo=TOKYO)
    )
    # Mon 12/28 night, closure 12/29-1/3, ends Mon 1/4 09:00; then Mon 1/4 night
    assert _local(out) == [("12-28 18:00", "01-04 09:00"), ("01-04 18:00", "01-05 09:00")]


def test_duty_windows_clipped_to_range_and_need_aware_instants() -> None:
    cfg = parse_config(group_dict())
    start = datetime(2026, 4, 7, 23, tzinfo=TOKYO)
    out = duty_windows(cfg, start, start + timedelta(hours=2))
    assert _local(out) == [("04-07 23:00", "04-08 01:00")]
    try:
        duty_windows(cfg, datetime(2026, 4, 7), datetime(2026, 4, 8))
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("naive instants must be refused")


def test_duty_windows_new_york_keeps_wall_clock_across_dst() -> None:
    ny = ZoneInfo("America/New_York")
    cfg = parse_config(
        group_dict(timezone="America/New_York", holidays={"national": False}, closures=[])
    )
    # DST starts Sun 2026-03-08 02:00: the weekend window Sat 13:00 -> Mon 09:00 is 43 h, not 44
    out = duty_windows(
        cfg, datetime(2026, 3, 7, 12, tzinfo=ny), datetime(2026, 3, 9, 12, tzinfo=ny)
    )
    assert _local(out, ny) == [("03-07 13:00", "03-09 09:00")]
    assert out[0].end - out[0].start == timedelta(hours=43)
