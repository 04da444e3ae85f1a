"""The IPSO Smart Objects SPMP uses: Digital Output, the sensors, Energy and Battery (all version 1.1).

The charger measures each port with Voltage (3316) and Current (3317) objects, as the seed asks,
switches each port with a Digital Output (3201), and may add Temperature, Power, Energy and
Battery objects. Version 1.1 of the IPSO objects is a superset of the 1.0 tables quoted in the
seed: it adds Timestamp (5518), Fractional Timestamp (6050) and the measurement quality resources
(6042, 6049). The sensor objects share their resources, so one template builds them.
"""

from __future__ import annotations

from spmp.lwm2m.model import ObjectModel, ResourceModel
from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    BOOLEAN,
    EXECUTE,
    FLOAT,
    INTEGER,
    NO_TYPE,
    READ,
    READ_WRITE,
    STRING,
    TIME,
    define_object,
    res,
)

__all__ = ["BATTERY", "CURRENT", "DIGITAL_OUTPUT", "ENERGY", "POWER", "TEMPERATURE", "VOLTAGE"]


def _timestamp_and_quality() -> list[ResourceModel]:
    return [
        res(5518, "Timestamp", READ, TIME, description="When the measurement was taken."),
        res(
            6050,
            "Fractional Timestamp",
            READ,
            FLOAT,
            range="0..1",
            units="s",
            description="Fraction of a second to add to Timestamp, for sub-second resolution.",
        ),
        res(
            6042,
            "Measurement Quality Indicator",
            READ,
            INTEGER,
            range="0..23",
            description="Quality of the measurement: 0 unchecked, 1 rejected with no reason, 2 gross range "
            "failure, 3 spike, 4 stuck/flat line, 5 rate of change too high, ... (IPSO 6042).",
        ),
        res(
            6049,
            "Measurement Quality Level",
            READ,
            INTEGER,
            range="0..100",
            description="Confidence in the measurement from 0 (unreliable) to 100 (fully reliable).",
        ),
    ]


def _sensor(object_id: int, name: str, description: str, units_example: str, *, calibration: bool) -> ObjectModel:
    """An IPSO sensor object: measured value, units, min/max tracking, range, optional calibration."""
    resources = [
        res(
            5700,
            "Sensor Value",
            READ,
            FLOAT,
            mandatory=True,
            description="Last or current value measured by the sensor.",
        ),
        res(5701, "Sensor Units", READ, STRING, description=f"Units of Sensor Value, e.g. {units_example!r}."),
        res(
            5601,
            "Min Measured Value",
            READ,
            FLOAT,
            description="Lowest value measured since power-on or the last reset.",
        ),
        res(
            5602,
            "Max Measured Value",
            READ,
            FLOAT,
            description="Highest value measured since power-on or the last reset.",
        ),
        res(5603, "Min Range Value", READ, FLOAT, description="Lowest value the sensor can measure."),
        res(5604, "Max Range Value", READ, FLOAT, description="Highest value the sensor can measure."),
        res(
            5605,
            "Reset Min and Max Measured Values",
            EXECUTE,
            NO_TYPE,
            description="Set Min and Max Measured Value to the current value.",
        ),
    ]
    if calibration:
        resources.append(
            res(
                5821,
                "Current Calibration",
                READ_WRITE,
                FLOAT,
                description="Calibration coefficient applied to the raw reading (SPMP stores the factory "
                "ADC calibration here, so the server can back it up and restore it).",
            )
        )
    resources.append(
        res(
            5750,
            "Application Type",
            READ_WRITE,
            STRING,
            description="What the sensor measures, as a free label, e.g. 'battery' or 'load port 1'.",
        )
    )
    resources.extend(_timestamp_and_quality())
    return define_object(
        object_id,
        name,
        version="1.1",
        lwm2m_version="1.0",
        multiple=True,
        mandatory=False,
        description=description,
        resources=resources,
    )


DIGITAL_OUTPUT = define_object(
    ids.DIGITAL_OUTPUT,
    "Digital Output",
    version="1.1",
    lwm2m_version="1.0",
    multiple=True,
    mandatory=False,
    description="A digital output; SPMP uses one per port as the port's on/off control (seed: Control).",
    resources=[
        res(
            5550,
            "Digital Output State",
            READ_WRITE,
            BOOLEAN,
            mandatory=True,
            description="Current state of the output; writing it switches the output (true: port on).",
        ),
        res(
            5551,
            "Digital Output Polarity",
            READ_WRITE,
            BOOLEAN,
            description="Polarity of the output: false normal, true reversed.",
        ),
        res(
            5750,
            "Application Type",
            READ_WRITE,
            STRING,
            description="What the output drives, as a free label, e.g. 'BTS load'.",
        ),
        res(5518, "Timestamp", READ, TIME, description="When the output state last changed."),
        res(
            6050,
            "Fractional Timestamp",
            READ,
            FLOAT,
            range="0..1",
            units="s",
            description="Fraction of a second to add to Timestamp, for sub-second resolution.",
        ),
    ],
)

TEMPERATURE = _sensor(
    ids.TEMPERATURE,
    "Temperature",
    "A temperature sensor (battery, heat sink or ambient), with min/max tracking.",
    "Cel",
    calibration=False,
)
VOLTAGE = _sensor(
    ids.VOLTAGE,
    "Voltage",
    "A voltmeter: voltage between two points, e.g. at a port or across the battery.",
    "V",
    calibration=True,
)
CURRENT = _sensor(
    ids.CURRENT,
    "Current",
    "An ammeter: current through a port, the PV input or the battery.",
    "A",
    calibration=True,
)
POWER = _sensor(
    ids.POWER,
    "Power",
    "A power meter: active power through a port, the PV input or the battery.",
    "W",
    calibration=True,
)

ENERGY = define_object(
    ids.ENERGY,
    "Energy",
    version="1.1",
    lwm2m_version="1.0",
    multiple=True,
    mandatory=False,
    description="An energy meter: cumulative energy through a port, the PV input or the battery.",
    resources=[
        res(5700, "Sensor Value", READ, FLOAT, mandatory=True, description="Energy accumulated since the last reset."),
        res(5701, "Sensor Units", READ, STRING, description="Units of Sensor Value, e.g. 'Wh'."),
        res(5822, "Reset Cumulative energy", EXECUTE, NO_TYPE, description="Set the accumulated energy to 0."),
        res(
            5750,
            "Application Type",
            READ_WRITE,
            STRING,
            description="What the meter measures, as a free label, e.g. 'PV input'.",
        ),
        *_timestamp_and_quality(),
    ],
)

BATTERY = define_object(
    ids.BATTERY,
    "Battery",
    version="1.1",
    lwm2m_version="1.0",
    multiple=True,
    mandatory=False,
    description="A battery with its level, capacity and supply-loss counters (IPSO). SPMP reports the "
    "full RFC 7577 battery information in its own SPMP Battery object.",
    resources=[
        res(1, "Battery level", READ, INTEGER, mandatory=True, units="/100", description="State of charge in percent."),
        res(2, "Battery capacity", READ, FLOAT, units="Ah", description="Capacity of the battery."),
        res(3, "Battery voltage", READ, FLOAT, units="V", description="Voltage across the battery terminals."),
        res(4, "Type of battery", READ_WRITE, STRING, description="Battery chemistry, e.g. 'Lead-acid AGM'."),
        res(
            5,
            "Low battery threshold",
            READ_WRITE,
            INTEGER,
            units="/100",
            description="Level below which Battery level too low becomes true.",
        ),
        res(
            6,
            "Battery level too low",
            READ,
            BOOLEAN,
            description="True while Battery level is below Low battery threshold.",
        ),
        res(
            7,
            "Battery shutdown",
            READ_WRITE,
            BOOLEAN,
            description="Writing true disconnects the battery from the device.",
        ),
        res(8, "Number of cycles", READ, INTEGER, description="Charge/discharge cycles completed."),
        res(9, "Supply loss", READ, BOOLEAN, description="True while the external supply is lost."),
        res(10, "Supply loss counter", READ, INTEGER, description="Number of supply losses since the last reset."),
        res(11, "Supply loss counter reset", EXECUTE, NO_TYPE, description="Set Supply loss counter to 0."),
        res(12, "Supply loss reason", READ, STRING, description="Reason of the last supply loss."),
        *_timestamp_and_quality(),
    ],
)
