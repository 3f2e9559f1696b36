"""Update windows: validation, open/closed at an instant, next opening, across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.decide.windows import is_open, next_opening, window_findings
from reconciler.model import Location, UpdateWindow

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTS = UpdateWindow(("mon", "tue", "wed", "thu", "fri"), "22:00", "04:00", "Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


class TestFindings:
    def test_bad_days_times_and_zones_are_reported_at_the_window(self) -> None:
        """Unknown day names, times outside 00:00-23:59 and unknown zones are findings."""
        bad = UpdateWindow(
            ("mon", "funday"),  # type: ignore[arg-type]
            "24:00",
            "7:5",
            "Mars/Olympus",
            location=Location("devices/d.yaml", 7),
        )
        messages = [str(f) for f in window_findings([bad])]
        assert len(messages) == 4
        assert all(m.startswith("devices/d.yaml:7: ") for m in messages)
        assert window_findings([NIGHTS]) == []


class TestIsOpen:
    def test_no_windows_means_always_open(self) -> None:
        """A device without windows may be updated any time."""
        assert is_open((), datetime(2026, 1, 1, tzinfo=UTC))
        assert next_opening((), datetime(2026, 1, 1, tzinfo=UTC)) is None

    def test_window_wraps_past_midnight_on_the_start_day(self) -> None:
        """'fri 22:00-04:00' is open Saturday 03:00 but not Saturday 22:00."""
        fri = UpdateWindow(("fri",), "22:00", "04:00", "Europe/Berlin")
        assert is_open([fri], berlin(2026, 3, 7, 3, 0))  # Saturday
        assert not is_open([fri], berlin(2026, 3, 7, 22, 0))
        assert not is_open([fri], berlin(2026, 3, 7, 4, 0))  # end is exclusive
        assert is_open([fri], berlin(2026, 3, 6, 22, 0))  # start is inclusive

    def test_time_zone_of_now_does_not_matter(self) -> None:
        """The same instant is open or closed whatever zone `now` is written in."""
        instant = berlin(2026, 6, 2, 23, 30)
        assert is_open([NIGHTS], instant)
        assert is_open([NIGHTS], instant.astimezone(UTC))
        assert is_open([NIGHTS], instant.astimezone(ZoneInfo("America/New_York")))


class TestNextOpening:
    def test_next_opening_is_aware_utc(self) -> None:
        """Friday noon in Berlin (summer) -> Friday 22:00 CEST = 20:00 UTC."""
        got = next_opening([NIGHTS], berlin(2026, 6, 5, 12, 0))
        assert got == datetime(2026, 6, 5, 20, 0, tzinfo=UTC)
        assert got is not None and got.tzinfo is UTC

    def test_weekend_gap_skips_to_monday(self) -> None:
        """After the Friday night window the next opening is Monday 22:00."""
        got = next_opening([NIGHTS], berlin(2026, 6, 6, 12, 0))
        assert got == berlin(2026, 6, 8, 22, 0).astimezone(UTC)

    def test_none_when_open_now_or_no_days(self) -> None:
        """Open now gives None, and so does a window on no day at all."""
        assert next_opening([NIGHTS], berlin(2026, 6, 2, 23, 0)) is None
        never = UpdateWindow((), "01:00", "02:00", "UTC")
        assert next_opening([never], datetime(2026, 1, 1, tzinfo=UTC)) is None
        assert not is_open([never], datetime(2026, 1, 1, tzinfo=UTC))


class TestDaylightSaving:
    SPRING = UpdateWindow(("sun",), "02:30", "05:00", "Europe/Berlin")  # 2026-03-29: 02:00->03:00

    def test_spring_forward_start_in_the_gap_opens_at_the_jump(self) -> None:
        """A 02:30 start on spring-forward day opens at the jump, 03:00 CEST (01:00 UTC)."""
        before = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
        assert next_opening([self.SPRING], before) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
        assert not is_open([self.SPRING], datetime(2026, 3, 29, 0, 59, tzinfo=UTC))
        assert is_open([self.SPRING], datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
        # 05:00 CEST = 03:00 UTC closes it: the window is one hour shorter that night.
        assert not is_open([self.SPRING], datetime(2026, 3, 29, 3, 0, tzinfo=UTC))

    def test_window_wholly_inside_the_gap_does_not_open_that_night(self) -> None:
        """02:15-02:45 does not exist on spring-forward day; the next opening is a week later."""
        gap = UpdateWindow(("sun",), "02:15", "02:45", "Europe/Berlin")
        got = next_opening([gap], datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
        assert got == datetime(2026, 4, 5, 0, 15, tzinfo=UTC)

    def test_fall_back_uses_the_first_occurrence(self) -> None:
        """On 2026-10-25 02:30 happens twice; the window opens at the first (00:30 UTC)."""
        fall = UpdateWindow(("sun",), "02:30", "03:30", "Europe/Berlin")
        before = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
        assert next_opening([fall], before) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
        # 03:30 CET = 02:30 UTC: the window lasts two hours that night.
        assert is_open([fall], datetime(2026, 10, 25, 2, 0, tzinfo=UTC))
        assert not is_open([fall], datetime(2026, 10, 25, 2, 30, tzinfo=UTC))

    def test_wall_clock_start_is_kept_across_the_change(self) -> None:
        """The nightly 22:00 window opens at 22:00 local both before and after DST ends."""
        before = next_opening([NIGHTS], berlin(2026, 10, 23, 12, 0))  # Friday, CEST
        after = next_opening([NIGHTS], berlin(2026, 10, 26, 12, 0))  # Monday, CET
        assert before == datetime(2026, 10, 23, 20, 0, tzinfo=UTC)
        assert after == datetime(2026, 10, 26, 21, 0, tzinfo=UTC)


class TestProperties:
    @settings(max_examples=1000, deadline=None)
    @given(
        minutes=st.integers(min_value=0, max_value=60 * 24 * 400),
        start=st.sampled_from(["00:00", "02:15", "02:30", "13:15", "22:00"]),
        end=st.sampled_from(["00:00", "02:45", "03:00", "04:00", "23:59"]),
        days=st.lists(st.sampled_from(["mon", "wed", "sat", "sun"]), min_size=1, unique=True),
    )
    def test_next_opening_is_open_and_nothing_opens_earlier(
        self, minutes: int, start: str, end: str, days: list[str]
    ) -> None:
        """At the next opening the window is open, and a minute before it was closed."""
        window = UpdateWindow(tuple(days), start, end, "Europe/Berlin")  # type: ignore[arg-type]
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
        opening = next_opening([window], now)
        if opening is None:
            assert is_open([window], now)
            return
        assert opening > now
        assert is_open([window], opening)
        assert not is_open([window], max(now, opening - timedelta(minutes=1)))
