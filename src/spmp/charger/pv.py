"""PV array model: clear-sky irradiance from pvlib times a seeded cloudiness process.

Chain (all pvlib, all offline), computed for a whole UTC day at once on a 60 s grid and cached,
because the pvlib calls are vectorized and cost about the same for one instant as for 1441:

1. solar position (``solarposition.get_solarposition``) for the site's latitude, longitude, altitude;
2. Linke turbidity from pvlib's bundled monthly climatology (``clearsky.lookup_linke_turbidity``),
   interpolated to the day of year here (see ``_linke_turbidity``);
3. Ineichen–Perez clear sky (``clearsky.ineichen``) with absolute air mass at the site's pressure;
4. plane-of-array transposition (``irradiance.get_total_irradiance``, Hay–Davies) for tilt/azimuth.

Per instant, the clear-sky POA irradiance is multiplied by the clear-sky index ``kt`` of the cloud
process (``CloudProcess``), then the cell temperature (SAPM, ``temperature.sapm_cell``) and DC power
(``pvsystem.pvwatts_dc``: rating × G/1000 × (1 + γ(Tc − 25))) follow. Applying one index to beam and
diffuse alike is a simplification: clouds really turn beam into diffuse, which matters for tilt
gains but not for a charger's energy budget.

Maximum power point voltage and current (a single-diode-shaped approximation, not a fitted model):
``Vmp = Vmp_stc·(1 + β_vmp(Tc − 25)) + Ns·n·kT/q·ln(G/1000)`` and ``Imp = P/Vmp``; ``Voc`` follows the
same law from ``Voc_stc``. The logarithm gives the familiar voltage sag at low light; below
1 W/m² the array is dark (0 V).

Calls that would make pandas 3 warn (``DatetimeIndex.dayofyear`` inside pvlib's turbidity
interpolation and ``get_extra_radiation``) are avoided by passing day-of-year numbers, and
Ineichen is evaluated only for the sun above the horizon (it divides by cos zenith).
"""

from __future__ import annotations

import calendar
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Protocol

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import NDArray

__all__ = [
    "CloudProcess",
    "FixedPv",
    "PvArray",
    "PvArrayConfig",
    "PvPoint",
    "PvSource",
    "SiteLocation",
    "Weather",
    "WeatherParams",
]

GRID_S = 60  # resolution of the cached day grid and of the cloud process
_GRID_N = 86400 // GRID_S + 1  # one extra sample (next midnight) so that interpolation never runs off the end
_BOLTZMANN_OVER_Q = 8.617333262e-5  # V/K
_DARK_W_M2 = 1.0  # below this the array counts as dark: no voltage, no power


@dataclass(frozen=True, slots=True)
class SiteLocation:
    latitude: float
    longitude: float
    altitude_m: float = 0.0


@dataclass(frozen=True, slots=True)
class PvArrayConfig:
    """A PV array as the charger sees it: rating at STC and the electrical and thermal coefficients.

    Defaults are a 3S2P string of 300 W, 72-cell modules (Vmp 36.5 V, Voc 44.5 V): 1.8 kWp at
    109.5 V, a common match for a 48 V battery behind an MPPT charger with a 150 V input.
    ``tilt_deg``/``azimuth_deg`` None mean "face the equator, tilted by the latitude" (azimuth 180
    is south), the usual fixed mount.
    """

    rated_w: float = 1800.0
    vmp_stc_v: float = 109.5
    voc_stc_v: float = 133.5
    cells_in_series: int = 216
    gamma_pdc: float = -0.004  # 1/°C, pvwatts power temperature coefficient (crystalline Si)
    beta_voltage: float = -0.0032  # 1/°C, relative temperature coefficient of Vmp and Voc
    diode_ideality: float = 1.3
    tilt_deg: float | None = None
    azimuth_deg: float | None = None
    wind_speed_m_s: float = 1.0
    mounting: str = "open_rack_glass_polymer"  # a pvlib SAPM temperature-model parameter set


class Weather(Enum):
    """Named cloudiness regimes; ``WeatherParams.for_weather`` gives their parameters."""

    CLEAR = "clear"
    MIXED = "mixed"
    POOR = "poor"


@dataclass(frozen=True, slots=True)
class WeatherParams:
    """A two-regime (sunny/overcast) Markov chain with AR(1) noise on the clear-sky index, per minute.

    ``p_cloud``: chance per minute that a sunny sky clouds over; ``p_clear``: that an overcast sky
    clears. Stationary overcast share = p_cloud / (p_cloud + p_clear). Within a regime the index
    relaxes to its mean with coefficient ``phi`` and noise ``sigma``.
    """

    p_cloud: float
    p_clear: float
    sunny_mean: float = 0.97
    overcast_mean: float = 0.35
    phi: float = 0.9
    sigma: float = 0.03

    @staticmethod
    def for_weather(weather: Weather) -> WeatherParams:
        return _WEATHER[weather]

    @property
    def overcast_share(self) -> float:
        return self.p_cloud / (self.p_cloud + self.p_clear)


# Chosen so that daily energy is ~95 % (clear), ~60 % (mixed) and ~20 % (poor) of clear sky.
_WEATHER = {
    Weather.CLEAR: WeatherParams(p_cloud=0.001, p_clear=0.05, overcast_mean=0.6, sigma=0.01),
    Weather.MIXED: WeatherParams(p_cloud=0.02, p_clear=0.02, overcast_mean=0.3, sigma=0.05),
    Weather.POOR: WeatherParams(p_cloud=0.02, p_clear=0.001, overcast_mean=0.15, sigma=0.03),
}
KT_MIN, KT_MAX = 0.05, 1.0


class CloudProcess:
    """Seeded, reproducible clear-sky index on the 60 s grid, one independent series per UTC day.

    Each day's series comes from its own generator seeded with (seed, day ordinal, weather), so any
    day can be computed alone, in any order, and always gives the same values: a simulation that
    jumps ahead or is re-run matches. Days are independent because midnight is dark anyway.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def day(self, day: date, weather: Weather) -> NDArray[np.float64]:
        params = WeatherParams.for_weather(weather)
        rng = np.random.default_rng([self.seed, day.toordinal(), list(Weather).index(weather)])
        switch = rng.random(_GRID_N)
        noise = rng.normal(0.0, params.sigma, _GRID_N)
        out = np.empty(_GRID_N)
        overcast = bool(rng.random() < params.overcast_share)  # start in the stationary distribution
        kt = params.overcast_mean if overcast else params.sunny_mean
        for i in range(_GRID_N):
            if overcast and switch[i] < params.p_clear:
                overcast = False
            elif not overcast and switch[i] < params.p_cloud:
                overcast = True
            mean = params.overcast_mean if overcast else params.sunny_mean
            kt = mean + params.phi * (kt - mean) + noise[i]
            kt = min(KT_MAX, max(KT_MIN, kt))
            out[i] = kt
        return out


@dataclass(frozen=True, slots=True)
class PvPoint:
    """The array at one instant: what it could deliver at its maximum power point, and why."""

    power_w: float  # DC power at the maximum power point
    vmp_v: float
    imp_a: float
    voc_v: float
    poa_w_m2: float  # plane-of-array irradiance after clouds
    clear_sky_poa_w_m2: float
    clear_sky_index: float
    cell_temp_c: float

    @property
    def dark(self) -> bool:
        return self.voc_v <= 0.0

    def operating_point(self, used_w: float) -> tuple[float, float]:
        """(voltage, current) of the array when the charger draws only ``used_w`` ≤ ``power_w``.

        An MPPT charger that needs less than the maximum moves the array off the MPP towards open
        circuit; here the voltage moves linearly from Vmp (all used) to Voc (nothing used), a
        simplification of the real I–V curve that keeps V·I equal to the power drawn.
        """
        if self.dark:
            return 0.0, 0.0
        if self.power_w <= 0.0 or used_w <= 0.0:
            return self.voc_v, 0.0
        share = min(1.0, used_w / self.power_w)
        voltage = self.vmp_v + (self.voc_v - self.vmp_v) * (1.0 - share)
        return voltage, used_w / voltage


class PvSource(Protocol):
    """What the site needs from a PV source: the array's state at a time and ambient temperature."""

    def at(self, when: datetime, ambient_c: float) -> PvPoint: ...


@dataclass(slots=True)
class FixedPv:
    """A PV source with constant power (tests, bench setups): no sun, no clouds, no temperature."""

    power_w: float
    vmp_v: float = 109.5
    voc_v: float = 133.5

    def at(self, when: datetime, ambient_c: float) -> PvPoint:
        dark = self.power_w <= 0.0
        return PvPoint(
            power_w=max(0.0, self.power_w),
            vmp_v=0.0 if dark else self.vmp_v,
            imp_a=0.0 if dark else self.power_w / self.vmp_v,
            voc_v=0.0 if dark else self.voc_v,
            poa_w_m2=0.0 if dark else 1000.0,
            clear_sky_poa_w_m2=0.0 if dark else 1000.0,
            clear_sky_index=1.0,
            cell_temp_c=ambient_c,
        )


class PvArray:
    """pvlib clear sky × cloud process for one array at one site; see the module docstring."""

    _CACHE_DAYS = 4

    def __init__(
        self,
        location: SiteLocation,
        config: PvArrayConfig | None = None,
        *,
        weather: Weather = Weather.CLEAR,
        seed: int = 0,
    ) -> None:
        self.location = location
        self.config = config or PvArrayConfig()
        self.default_weather = weather
        self.clouds = CloudProcess(seed)
        self._weather_by_day: dict[date, Weather] = {}
        self._cache: OrderedDict[tuple[date, Weather], tuple[NDArray[np.float64], NDArray[np.float64]]] = OrderedDict()
        self._monthly_turbidity = _monthly_linke_turbidity(location)
        # The SAPM cell temperature is linear in irradiance: Tc = Ta + k·E. One pvlib call gives k.
        params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][self.config.mounting]
        self._cell_rise_per_w_m2 = (
            float(pvlib.temperature.sapm_cell(1000.0, 0.0, self.config.wind_speed_m_s, **params)) / 1000.0
        )

    @property
    def tilt_deg(self) -> float:
        tilt = self.config.tilt_deg
        return abs(self.location.latitude) if tilt is None else tilt

    @property
    def azimuth_deg(self) -> float:
        azimuth = self.config.azimuth_deg
        if azimuth is None:
            return 180.0 if self.location.latitude >= 0 else 0.0
        return azimuth

    def set_weather(self, weather: Weather, day: date | None = None) -> None:
        """Set the weather of one UTC day, or (``day`` None) the default for days not set."""
        if day is None:
            self.default_weather = weather
        else:
            self._weather_by_day[day] = weather

    def weather_on(self, day: date) -> Weather:
        return self._weather_by_day.get(day, self.default_weather)

    def at(self, when: datetime, ambient_c: float) -> PvPoint:
        when = when.astimezone(UTC)
        day = when.date()
        clear_poa, kt = self._day(day, self.weather_on(day))
        pos = (when - datetime(day.year, day.month, day.day, tzinfo=UTC)).total_seconds() / GRID_S
        i = min(int(pos), _GRID_N - 2)
        frac = pos - i
        clear = float(clear_poa[i] + (clear_poa[i + 1] - clear_poa[i]) * frac)
        index = float(kt[i] + (kt[i + 1] - kt[i]) * frac)
        return self.point(clear, index, ambient_c)

    def point(self, clear_sky_poa: float, clear_sky_index: float, ambient_c: float) -> PvPoint:
        """The array's MPP for a clear-sky POA irradiance, a clear-sky index and an air temperature."""
        cfg = self.config
        poa = clear_sky_poa * clear_sky_index
        cell = ambient_c + self._cell_rise_per_w_m2 * poa
        if poa < _DARK_W_M2:
            return PvPoint(0.0, 0.0, 0.0, 0.0, poa, clear_sky_poa, clear_sky_index, cell)
        power = max(0.0, float(pvlib.pvsystem.pvwatts_dc(poa, cell, cfg.rated_w, cfg.gamma_pdc)))
        thermal_v = cfg.cells_in_series * cfg.diode_ideality * _BOLTZMANN_OVER_Q * (cell + 273.15)
        log_term = thermal_v * math.log(poa / 1000.0)
        temp_factor = 1.0 + cfg.beta_voltage * (cell - 25.0)
        vmp = max(0.0, cfg.vmp_stc_v * temp_factor + log_term)
        voc = max(vmp, cfg.voc_stc_v * temp_factor + log_term)
        imp = power / vmp if vmp > 0 else 0.0
        return PvPoint(power, vmp, imp, voc, poa, clear_sky_poa, clear_sky_index, cell)

    def clear_sky_poa_day(self, day: date) -> NDArray[np.float64]:
        """Clear-sky POA irradiance (W/m²) of one UTC day on the 60 s grid (1441 samples)."""
        return self._day(day, self.weather_on(day))[0]

    def _day(self, day: date, weather: Weather) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        key = (day, weather)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        result = (self._clear_sky_poa(day), self.clouds.day(day, weather))
        self._cache[key] = result
        if len(self._cache) > self._CACHE_DAYS:
            self._cache.popitem(last=False)
        return result

    def _clear_sky_poa(self, day: date) -> NDArray[np.float64]:
        loc = self.location
        times = pd.date_range(datetime(day.year, day.month, day.day, tzinfo=UTC), periods=_GRID_N, freq=f"{GRID_S}s")
        solpos = pvlib.solarposition.get_solarposition(times, loc.latitude, loc.longitude, altitude=loc.altitude_m)
        zenith_all = np.asarray(solpos["apparent_zenith"], dtype=float)
        up = zenith_all < 90.0
        out = np.zeros(_GRID_N)
        if not up.any():
            return out
        zenith = zenith_all[up]
        azimuth = np.asarray(solpos["azimuth"], dtype=float)[up]
        doy = np.asarray(times.day_of_year, dtype=float)[up]
        airmass = pvlib.atmosphere.get_absolute_airmass(
            pvlib.atmosphere.get_relative_airmass(zenith), pvlib.atmosphere.alt2pres(loc.altitude_m)
        )
        dni_extra = pvlib.irradiance.get_extra_radiation(doy)
        turbidity = _linke_turbidity(self._monthly_turbidity, day)
        clear = pvlib.clearsky.ineichen(zenith, airmass, turbidity, altitude=loc.altitude_m, dni_extra=dni_extra)
        poa = pvlib.irradiance.get_total_irradiance(
            self.tilt_deg,
            self.azimuth_deg,
            zenith,
            azimuth,
            clear["dni"],
            clear["ghi"],
            clear["dhi"],
            dni_extra=dni_extra,
            model="haydavies",
        )
        # Near the horizon the transposition can give tiny negative or NaN values: treat them as dark.
        out[up] = np.clip(np.nan_to_num(np.asarray(poa["poa_global"], dtype=float)), 0.0, None)
        return out


def _monthly_linke_turbidity(location: SiteLocation) -> NDArray[np.float64]:
    """The 12 monthly Linke turbidity values of pvlib's bundled climatology at the site."""
    months = pd.DatetimeIndex([datetime(2001, m, 15, tzinfo=UTC) for m in range(1, 13)])
    values = pvlib.clearsky.lookup_linke_turbidity(
        months, location.latitude, location.longitude, interp_turbidity=False
    )
    return np.asarray(values, dtype=float)


def _linke_turbidity(monthly: NDArray[np.float64], day: date) -> float:
    """Monthly values interpolated to ``day``, each taken at its month's middle (as pvlib does)."""
    year_days = 366 if calendar.isleap(day.year) else 365
    lengths = [calendar.monthrange(day.year, m)[1] for m in range(1, 13)]
    middles = np.cumsum([0, *lengths[:-1]]) + np.asarray(lengths) / 2.0
    x = np.concatenate([[middles[-1] - year_days], middles, [middles[0] + year_days]])
    y = np.concatenate([[monthly[-1]], monthly, [monthly[0]]])
    doy = (day - date(day.year, 1, 1)).days + 1
    return float(np.interp(doy, x, y))
