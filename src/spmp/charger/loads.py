"""Loads on the charger's output ports: constant power, constant current, and a BTS.

A load tells the site what it would draw at the bus voltage as a constant-current part plus a
constant-power part (a DC/DC-fed radio is constant power; a lamp or a relay coil is nearer constant
current). The site solves the bus with those two parts, so the draw follows the battery voltage.

Fault injection for the protections: ``short_circuit`` makes the load a near-zero resistance (the
port's short-circuit protection must trip), ``connected = False`` a broken wire (open circuit).

BTS draw (field notes): an OpenCellular-class small site ~37–40 W at 2 W RF per chain; a 10 W-PA
GSM BTS ~69 W, the PA about 65 % of it. The smart-load work sets the draw from the BTS's
configuration through ``BtsLoad.power_w`` or a ``draw`` callback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "GSM_BTS_W",
    "OPENCELLULAR_BTS_W",
    "BtsLoad",
    "ConstantCurrentLoad",
    "ConstantPowerLoad",
    "Load",
    "LoadDemand",
]

OPENCELLULAR_BTS_W = 38.5  # middle of the 37–40 W of the field notes
GSM_BTS_W = 69.0
SHORT_CIRCUIT_OHM = 0.01  # what a shorted cable looks like to the port


@dataclass(frozen=True, slots=True)
class LoadDemand:
    """What a load draws at bus voltage V: ``current_a + power_w / V``."""

    current_a: float = 0.0
    power_w: float = 0.0

    def at(self, voltage_v: float) -> float:
        return self.current_a + (self.power_w / voltage_v if voltage_v > 0 else 0.0)


class Load(ABC):
    """Base class: a named load with fault flags; subclasses say what they draw when healthy."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.short_circuit = False
        self.connected = True

    @abstractmethod
    def nominal(self) -> LoadDemand:
        """What the load draws when healthy and connected."""

    def demand(self) -> LoadDemand:
        """The draw as the port sees it, faults included."""
        if not self.connected:
            return LoadDemand()
        return self.nominal()

    def prospective_current(self, voltage_v: float) -> float:
        """Current the port would carry at ``voltage_v`` (a short draws V / 10 mΩ)."""
        if self.short_circuit:
            return voltage_v / SHORT_CIRCUIT_OHM
        return self.demand().at(voltage_v)


class ConstantPowerLoad(Load):
    def __init__(self, name: str, power_w: float) -> None:
        super().__init__(name)
        self.power_w = power_w

    def nominal(self) -> LoadDemand:
        return LoadDemand(power_w=self.power_w)


class ConstantCurrentLoad(Load):
    def __init__(self, name: str, current_a: float) -> None:
        super().__init__(name)
        self.current_a = current_a

    def nominal(self) -> LoadDemand:
        return LoadDemand(current_a=self.current_a)


class BtsLoad(Load):
    """A base station: constant power set by ``power_w`` or, when given, by the ``draw`` callback."""

    def __init__(self, name: str = "BTS", power_w: float = GSM_BTS_W, draw: Callable[[], float] | None = None) -> None:
        super().__init__(name)
        self.power_w = power_w
        self.draw = draw

    def nominal(self) -> LoadDemand:
        return LoadDemand(power_w=self.draw() if self.draw is not None else self.power_w)
