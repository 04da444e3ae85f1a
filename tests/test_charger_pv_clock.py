"""The PV model (pvlib clear sky × seeded clouds) and the simulation clock."""

from __future__ import annotations

import asyncio
import time
import warnings
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pvlib
import pytest

from spmp.charger import PvArray, PvArrayConfig, SimClock, SiteLocation, Weather
from spmp.charger.pv import KT_MAX, KT_MIN, CloudProcess

KAMPALA = SiteLocation(0.35, 32.58, 1190.0)
EQUINOX = date(2024, 3, 21)
NOON = datetime(2024, 3, 21, 9, 57, tzinfo=UTC)  # solar noon at 32.58° E


def test_zero_at_night() -> None:
    pv = PvArray(KAMPALA, seed=1)
    for hour in (0, 2, 17, 20, 23):  # local time is UTC+2h10 by the sun
        point = pv.at(datetime(2024, 3, 21, hour, tzinfo=UTC), 20.0)
        assert point.power_w == 0.0 and point.voc_v == 0.0 and point.dark
    assert pv.at(NOON, 25.0).power_w > 0


def test_noon_clear_sky_matches_pvlib_directly() -> None:
    """Our day-at-a-time chain against pvlib's own high-level path at one instant."""
    pv = PvArray(KAMPALA, seed=1)
    clear_poa = float(np.interp(9 * 60 + 57, np.arange(1441), pv.clear_sky_poa_day(EQUINOX)))
    times = pd.DatetimeIndex([NOON])
    location = pvlib.location.Location(KAMPALA.latitude, KAMPALA.longitude, altitude=KAMPALA.altitude_m)
    with warnings.catch_warnings():
        # pvlib's turbidity interpolation uses DatetimeIndex.dayofyear, deprecated in pandas 3; the
        # model itself avoids that call, the reference here may use it.
        warnings.simplefilter("ignore", DeprecationWarning)
        clear = location.get_clearsky(times, model="ineichen")
        solpos = location.get_solarposition(times)
        poa = pvlib.irradiance.get_total_irradiance(
            pv.tilt_deg,
            pv.azimuth_deg,
            solpos["apparent_zenith"],
            solpos["azimuth"],
            clear["dni"],
            clear["ghi"],
            clear["dhi"],
            dni_extra=pvlib.irradiance.get_extra_radiation(81),
            model="haydavies",
        )["poa_global"].iloc[0]
    assert clear_poa == pytest.approx(poa, rel=0.01)
    # Hand check: ~1110 W/m² on a panel tilted 0.35° at noon on the equinox at 1190 m.
    assert clear_poa == pytest.approx(1113, abs=10)
    # pvwatts at that irradiance: 1800 W × G/1000 × (1 − 0.004 × (Tc − 25)), Tc from SAPM open rack.
    point = pv.point(clear_poa, 1.0, 25.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    cell = pvlib.temperature.sapm_cell(clear_poa, 25.0, 1.0, **params)
    assert point.cell_temp_c == pytest.approx(cell)
    assert point.power_w == pytest.approx(1800 * clear_poa / 1000 * (1 - 0.004 * (cell - 25)))
    assert 1700 < point.power_w < 1760


def test_mpp_voltage_and_current() -> None:
    pv = PvArray(KAMPALA, PvArrayConfig(), seed=1)
    stc = pv.point(1000.0, 1.0, 25.0 - pv._cell_rise_per_w_m2 * 1000)  # cell exactly at 25 °C
    assert stc.vmp_v == pytest.approx(109.5) and stc.voc_v == pytest.approx(133.5)
    assert stc.power_w == pytest.approx(1800.0)
    assert stc.vmp_v * stc.imp_a == pytest.approx(stc.power_w)
    hot = pv.point(1000.0, 1.0, 45.0)
    dim = pv.point(1000.0, 0.1, 25.0)
    assert hot.vmp_v < stc.vmp_v  # voltage falls with temperature
    assert dim.vmp_v < stc.vmp_v and dim.imp_a < stc.imp_a / 5  # and with irradiance (logarithmically)
    # Drawing less than the MPP moves the array towards open circuit, V·I = power drawn.
    v, i = stc.operating_point(900.0)
    assert stc.vmp_v < v < stc.voc_v and v * i == pytest.approx(900.0)


def test_cloud_process_is_seeded_and_bounded() -> None:
    a, b, c = CloudProcess(5), CloudProcess(5), CloudProcess(6)
    day = date(2024, 6, 1)
    for weather in Weather:
        first = a.day(day, weather)
        assert np.array_equal(first, b.day(day, weather))
        assert not np.array_equal(first, c.day(day, weather))
        assert first.min() >= KT_MIN and first.max() <= KT_MAX
    # A day does not depend on which days were computed before it.
    a.day(day + timedelta(days=1), Weather.MIXED)
    assert np.array_equal(a.day(day, Weather.MIXED), b.day(day, Weather.MIXED))


def test_weather_orders_daily_energy() -> None:
    energy = {}
    for weather in Weather:
        pv = PvArray(KAMPALA, seed=3, weather=weather)
        start = datetime(2024, 3, 21, tzinfo=UTC)
        energy[weather] = sum(pv.at(start + timedelta(minutes=m), 25.0).power_w for m in range(3 * 1440)) / 60
    assert energy[Weather.CLEAR] > energy[Weather.MIXED] > energy[Weather.POOR]
    assert energy[Weather.POOR] < 0.4 * energy[Weather.CLEAR]


def test_weather_per_day() -> None:
    pv = PvArray(KAMPALA, seed=3)
    pv.set_weather(Weather.POOR, EQUINOX)
    assert pv.weather_on(EQUINOX) is Weather.POOR
    assert pv.weather_on(EQUINOX + timedelta(days=1)) is Weather.CLEAR
    clear = PvArray(KAMPALA, seed=3)
    start = datetime(2024, 3, 21, tzinfo=UTC)
    poor_wh = sum(pv.at(start + timedelta(minutes=m), 25.0).power_w for m in range(1440)) / 60
    clear_wh = sum(clear.at(start + timedelta(minutes=m), 25.0).power_w for m in range(1440)) / 60
    assert poor_wh < 0.5 * clear_wh


def test_southern_site_faces_north() -> None:
    pv = PvArray(SiteLocation(-25.7, 28.2), seed=0)
    assert pv.azimuth_deg == 0.0 and pv.tilt_deg == pytest.approx(25.7)


# ---- clock ------------------------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_clock_runs_at_speed() -> None:
    wall = FakeMonotonic()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = SimClock(start, speed=1440, monotonic=wall)
    wall.t += 60  # a wall minute is a simulated day
    assert clock.now() == start + timedelta(days=1)
    clock.advance(3600)
    assert clock.now() == start + timedelta(days=1, hours=1)
    clock.speed = 60
    assert clock.now() == start + timedelta(days=1, hours=1)  # changing speed does not jump
    wall.t += 1
    assert clock.elapsed() == pytest.approx(86400 + 3600 + 60)


def test_manual_clock_and_sleepers() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = SimClock(start, manual=True)
    assert clock.now() == start

    async def scenario() -> list[str]:
        woke: list[str] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep_sim(seconds)
            woke.append(name)

        tasks = [asyncio.create_task(sleeper("a", 10)), asyncio.create_task(sleeper("b", 5))]
        await asyncio.sleep(0)
        clock.advance(4)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(timedelta(seconds=2))
        await asyncio.sleep(0)
        assert woke == ["b"]
        clock.advance(10)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(scenario()) == ["b", "a"]
    assert clock.now() == start + timedelta(seconds=16)


def test_running_clock_sleep_scales_wall_time() -> None:
    # 30 simulated seconds at 100x take 0.3 s of wall time. The bounds are generous (a loaded CI
    # machine may oversleep, never by 10x; asyncio may wake a clock tick early): they catch a
    # clock that sleeps the simulated time in wall time, or does not sleep at all.
    clock = SimClock(datetime(2024, 1, 1, tzinfo=UTC), speed=100)
    wall0 = time.monotonic()
    asyncio.run(clock.sleep_sim(30))
    wall = time.monotonic() - wall0
    assert 0.25 <= wall < 3.0
    assert 25 <= clock.elapsed() < 300  # the simulated time that passed meanwhile, at the same rate


def test_clock_rejects_naive_start_and_going_back() -> None:
    with pytest.raises(ValueError, match="timezone"):
        SimClock(datetime(2024, 1, 1))
    clock = SimClock(datetime(2024, 1, 1, tzinfo=UTC), manual=True)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
