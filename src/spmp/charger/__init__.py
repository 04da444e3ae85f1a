"""The SPMP charger's physical model: PV, MPPT charging, battery, ports and loads (pure simulation).

``Site`` ties the parts together; ``SimClock`` runs simulated time faster than real time. The
LwM2M objects and the Modbus source are built on top of this package, never the other way round.
See docs/charger.md for the equations, parameters and their sources.
"""

from __future__ import annotations

from spmp.charger.battery import Battery, Chemistry, ChemistryParams
from spmp.charger.clock import SimClock
from spmp.charger.loads import BtsLoad, ConstantCurrentLoad, ConstantPowerLoad, Load, LoadDemand
from spmp.charger.mppt import ChargeState, ChargingAdminState, ChargingOperState, MpptCharger, MpptConfig
from spmp.charger.ports import Port, PortAlerts, PortKind, PortLimits
from spmp.charger.pv import FixedPv, PvArray, PvArrayConfig, PvPoint, SiteLocation, Weather
from spmp.charger.site import AmbientModel, EnergyBalance, PortSnapshot, Site, SiteSnapshot

__all__ = [
    "AmbientModel",
    "Battery",
    "BtsLoad",
    "ChargeState",
    "ChargingAdminState",
    "ChargingOperState",
    "Chemistry",
    "ChemistryParams",
    "ConstantCurrentLoad",
    "ConstantPowerLoad",
    "EnergyBalance",
    "FixedPv",
    "Load",
    "LoadDemand",
    "MpptCharger",
    "MpptConfig",
    "Port",
    "PortAlerts",
    "PortKind",
    "PortLimits",
    "PortSnapshot",
    "PvArray",
    "PvArrayConfig",
    "PvPoint",
    "SimClock",
    "Site",
    "SiteLocation",
    "SiteSnapshot",
    "Weather",
]
