"""Building blocks of the charger's LwM2M objects: live values and calibrated sensors.

:class:`LiveObject` is a :class:`~spmp.client.objects.StoredObject` whose resources can also be
*live*: a getter per (instance, resource) that reads the latest measurement. A getter may answer
None, and the resource is then absent from that instance (a Modbus controller that does not report
a quantity has no value for it, rather than a made-up one). :meth:`LiveObject.refresh`, called
after every sample, compares each live value with the one last seen and tells the tree about those
that changed, so observations of live resources fire like those of stored ones.

:class:`Sensor` is one IPSO sensor (Voltage 3316, Current 3317, Temperature 3303): its raw reading,
the calibration coefficient (resource 5821) and the min/max tracking. Calibration is a
multiplicative gain: Sensor Value = raw reading × Current Calibration (see docs/charger.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from spmp.client.objects import StoredObject
from spmp.lwm2m.model import ObjectModel
from spmp.lwm2m.node import MultipleResource, ObjectInstance, Resource, SingleResource
from spmp.lwm2m.values import Value

__all__ = ["LiveGetter", "LiveObject", "Sensor"]

LiveGetter = Callable[[], Value | Mapping[int, Value] | None]
"""A live value: single, a mapping for a multiple resource, or None for absent."""


class LiveObject(StoredObject):
    """A StoredObject with per-instance live resources; see the module docstring."""

    def __init__(self, model: ObjectModel) -> None:
        super().__init__(model)
        self._live: dict[int, dict[int, LiveGetter]] = {}
        self._seen: dict[tuple[int, int], object] = {}

    def set_live(self, instance_id: int, resource_id: int, getter: LiveGetter) -> None:
        if self._model.resource(resource_id) is None:
            raise ValueError(f"object {self._model.id} has no resource {resource_id}")
        self._live.setdefault(instance_id, {})[resource_id] = getter

    def stored_value(self, instance_id: int, resource_id: int) -> Value | None:
        """A stored (not live) single value, e.g. a threshold the server wrote."""
        found = self._instances.get(instance_id, {}).get(resource_id)
        return found.value if isinstance(found, SingleResource) else None

    def live_value(self, instance_id: int, resource_id: int) -> Value | Mapping[int, Value] | None:
        getter = self._live.get(instance_id, {}).get(resource_id)
        return None if getter is None else getter()

    def read_instance(self, instance_id: int) -> ObjectInstance:
        instance = super().read_instance(instance_id)
        live = self._live.get(instance_id)
        if not live:
            return instance
        resources = dict(instance.resources)
        for resource_id, getter in live.items():
            value = getter()
            if value is None:
                resources.pop(resource_id, None)
                continue
            kind = self._model.resources[resource_id].type
            resource: Resource = (
                MultipleResource(resource_id, dict(value), kind)
                if isinstance(value, Mapping)
                else SingleResource(resource_id, value, kind)
            )
            resources[resource_id] = resource
        return ObjectInstance(instance_id, dict(sorted(resources.items())))

    def refresh(self) -> int:
        """Tell observers about every live value that changed since the last refresh; returns how many."""
        changed = 0
        for instance_id, live in self._live.items():
            if instance_id not in self._instances:
                continue
            for resource_id, getter in live.items():
                value: object = getter()
                if isinstance(value, Mapping):
                    value = tuple(sorted(value.items()))
                key = (instance_id, resource_id)
                if key not in self._seen or self._seen[key] != value:
                    self._seen[key] = value
                    self._changed(instance_id, resource_id)
                    changed += 1
        return changed


@dataclass(slots=True)
class Sensor:
    """One IPSO sensor: raw reading → calibrated value, with min/max of the calibrated values.

    ``adc_gain`` simulates the converter's gain error of this unit (raw = true × adc_gain); the
    factory calibration is then 1 / adc_gain so that a calibrated unit reads the true value.
    ``calibration`` None means the sensor has no calibration resource (e.g. temperatures).
    """

    units: str
    range_min: float
    range_max: float
    application: str
    calibration: float | None = 1.0
    adc_gain: float = 1.0
    raw: float | None = None
    min_measured: float | None = None
    max_measured: float | None = None

    @property
    def value(self) -> float | None:
        if self.raw is None:
            return None
        return self.raw * (self.calibration if self.calibration is not None else 1.0)

    def update(self, true_value: float | None) -> float | None:
        """A new measurement of the true quantity (None: not available); returns the calibrated value."""
        self.raw = None if true_value is None else true_value * self.adc_gain
        value = self.value
        if value is not None:
            self.min_measured = value if self.min_measured is None else min(self.min_measured, value)
            self.max_measured = value if self.max_measured is None else max(self.max_measured, value)
        return value

    def reset_min_max(self) -> None:
        """Resource 5605: Min and Max Measured Value become the current value."""
        self.min_measured = self.max_measured = self.value
