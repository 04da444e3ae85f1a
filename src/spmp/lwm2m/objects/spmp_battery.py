"""SPMP Battery object (26246): the battery information of RFC 7577 (BATTERY-MIB batteryTable).

The IPSO Battery object (3411) lacks most of what an NMS reads through BATTERY-MIB, so SPMP carries
one batteryTable row per object instance. Decisions:

* Resource ids equal the batteryEntry column numbers (batteryIdentifier is 1, batteryCellIdentifier
  25), so that the SNMP agent maps one to the other without a table. State of Charge (26) and
  Timestamp (5518, the IPSO common resource) are SPMP additions.
* Quantities use LwM2M-style SI Floats (V, A, Ah, °C) instead of the MIB's integer mV, mA, mAh and
  deci-degrees; the SNMP agent converts and rounds.
* An optional resource that is absent means "unknown": the agent then answers the MIB's own unknown
  value for that column (0, 'ffffffff'H, '7fffffff'H or the zero DateAndTime, as RFC 7577 defines
  per column). Mandatory are what a charger always knows or has a defined unknown value for:
  Identifier (empty when unknown), Battery Type, Technology, Charging Operational State and Actual
  Voltage. RFC 7577's mandatory groups are thereby covered; its alarm thresholds (19–24) are
  writable here, as the MIB allows though it does not require it.
* Enumerations keep the MIB's numbers, e.g. Charging Operational State 2 = charging.
"""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    FLOAT,
    INTEGER,
    READ,
    READ_WRITE,
    STRING,
    TIME,
    UNSIGNED,
    define_object,
    res,
)

__all__ = ["SPMP_BATTERY", "SpmpBatteryResource"]


class SpmpBatteryResource(IntEnum):
    """Resource ids of the SPMP Battery object (1..25 are the batteryEntry columns of RFC 7577)."""

    IDENTIFIER = 1
    FIRMWARE_VERSION = 2
    BATTERY_TYPE = 3
    TECHNOLOGY = 4
    DESIGN_VOLTAGE = 5
    NUMBER_OF_CELLS = 6
    DESIGN_CAPACITY = 7
    MAX_CHARGING_CURRENT = 8
    TRICKLE_CHARGING_CURRENT = 9
    ACTUAL_CAPACITY = 10
    CHARGING_CYCLE_COUNT = 11
    LAST_CHARGING_CYCLE_TIME = 12
    CHARGING_OPER_STATE = 13
    CHARGING_ADMIN_STATE = 14
    ACTUAL_CHARGE = 15
    ACTUAL_VOLTAGE = 16
    ACTUAL_CURRENT = 17
    TEMPERATURE = 18
    ALARM_LOW_CHARGE = 19
    ALARM_LOW_VOLTAGE = 20
    ALARM_LOW_CAPACITY = 21
    ALARM_HIGH_CYCLE_COUNT = 22
    ALARM_HIGH_TEMPERATURE = 23
    ALARM_LOW_TEMPERATURE = 24
    CELL_IDENTIFIER = 25
    STATE_OF_CHARGE = 26
    TIMESTAMP = 5518


_MIB = "BATTERY-MIB"

SPMP_BATTERY = define_object(
    ids.SPMP_BATTERY,
    "SPMP Battery",
    version="1.0",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=False,
    description="One battery (or battery bank) of the site with the information of an RFC 7577 batteryTable "
    "row: identity, design data, charge state and control, measurements and alarm thresholds.",
    resources=[
        res(
            SpmpBatteryResource.IDENTIFIER,
            "Identifier",
            READ,
            STRING,
            mandatory=True,
            description=f"Identifier set by the battery manufacturer, '<model>:<serial>' when there are several "
            f"values; empty when unknown ({_MIB} batteryIdentifier).",
        ),
        res(
            SpmpBatteryResource.FIRMWARE_VERSION,
            "Firmware Version",
            READ,
            STRING,
            description=f"Firmware version of a battery module with electronics ({_MIB} batteryFirmwareVersion).",
        ),
        res(
            SpmpBatteryResource.BATTERY_TYPE,
            "Battery Type",
            READ,
            INTEGER,
            mandatory=True,
            range="1..5",
            description=f"1 unknown, 2 other, 3 primary (not rechargeable), 4 rechargeable, 5 capacitor "
            f"({_MIB} batteryType).",
        ),
        res(
            SpmpBatteryResource.TECHNOLOGY,
            "Technology",
            READ,
            UNSIGNED,
            mandatory=True,
            description=f"Battery technology as numbered by the IANA battery-technologies registry: 1 unknown, "
            f"2 other, 12 lead-acid, 13 VRLA gel, 14 VRLA AGM, 15 NiCd, 16 NiMH, 18 lithium-ion, "
            f"19 lithium polymer, 20 double-layer capacitor, ... ({_MIB} batteryTechnology).",
        ),
        res(
            SpmpBatteryResource.DESIGN_VOLTAGE,
            "Design Voltage",
            READ,
            FLOAT,
            units="V",
            description=f"Nominal voltage of the battery, e.g. 48 ({_MIB} batteryDesignVoltage, in mV there).",
        ),
        res(
            SpmpBatteryResource.NUMBER_OF_CELLS,
            "Number of Cells",
            READ,
            UNSIGNED,
            description=f"Number of cells in the battery ({_MIB} batteryNumberOfCells).",
        ),
        res(
            SpmpBatteryResource.DESIGN_CAPACITY,
            "Design Capacity",
            READ,
            FLOAT,
            units="Ah",
            description=f"Nominal capacity given by the manufacturer ({_MIB} batteryDesignCapacity, in mAh there).",
        ),
        res(
            SpmpBatteryResource.MAX_CHARGING_CURRENT,
            "Max Charging Current",
            READ,
            FLOAT,
            units="A",
            description=f"Maximum current the battery may be charged with ({_MIB} batteryMaxChargingCurrent, in "
            f"mA there).",
        ),
        res(
            SpmpBatteryResource.TRICKLE_CHARGING_CURRENT,
            "Trickle Charging Current",
            READ,
            FLOAT,
            units="A",
            description=f"Recommended average current for trickle (maintenance) charging "
            f"({_MIB} batteryTrickleChargingCurrent, in mA there).",
        ),
        res(
            SpmpBatteryResource.ACTUAL_CAPACITY,
            "Actual Capacity",
            READ,
            FLOAT,
            units="Ah",
            description=f"Estimated present capacity, lower than the design capacity as the battery ages "
            f"({_MIB} batteryActualCapacity, in mAh there).",
        ),
        res(
            SpmpBatteryResource.CHARGING_CYCLE_COUNT,
            "Charging Cycle Count",
            READ,
            UNSIGNED,
            description=f"Completed charging cycles; a cycle is a total discharge equal to the design capacity, "
            f"possibly spread over several partial discharges ({_MIB} batteryChargingCycleCount).",
        ),
        res(
            SpmpBatteryResource.LAST_CHARGING_CYCLE_TIME,
            "Last Charging Cycle Time",
            READ,
            TIME,
            description=f"When the last charging cycle completed, i.e. when the battery was last used through a "
            f"full cycle ({_MIB} batteryLastChargingCycleTime).",
        ),
        res(
            SpmpBatteryResource.CHARGING_OPER_STATE,
            "Charging Operational State",
            READ,
            INTEGER,
            mandatory=True,
            range="1..5",
            description=f"1 unknown, 2 charging, 3 maintaining charge (float/trickle), 4 not charging, "
            f"5 discharging ({_MIB} batteryChargingOperState).",
        ),
        res(
            SpmpBatteryResource.CHARGING_ADMIN_STATE,
            "Charging Administrative State",
            READ_WRITE,
            INTEGER,
            range="1..4",
            description=f"Requested charging state: 1 not set (the charger decides), 2 charge, 3 do not charge, "
            f"4 discharge. The charger follows it when conditions allow; Charging Operational State "
            f"shows the outcome ({_MIB} batteryChargingAdminState).",
        ),
        res(
            SpmpBatteryResource.ACTUAL_CHARGE,
            "Actual Charge",
            READ,
            FLOAT,
            units="Ah",
            description=f"Estimated charge stored in the battery ({_MIB} batteryActualCharge, in mAh there).",
        ),
        res(
            SpmpBatteryResource.ACTUAL_VOLTAGE,
            "Actual Voltage",
            READ,
            FLOAT,
            mandatory=True,
            units="V",
            description=f"Voltage across the battery terminals ({_MIB} batteryActualVoltage, in mV there).",
        ),
        res(
            SpmpBatteryResource.ACTUAL_CURRENT,
            "Actual Current",
            READ,
            FLOAT,
            units="A",
            description=f"Battery current, positive while charging and negative while discharging "
            f"({_MIB} batteryActualCurrent, in mA there).",
        ),
        res(
            SpmpBatteryResource.TEMPERATURE,
            "Temperature",
            READ,
            FLOAT,
            units="Cel",
            description=f"Temperature at or close to the battery ({_MIB} batteryTemperature, in deci-degrees "
            f"Celsius there).",
        ),
        res(
            SpmpBatteryResource.ALARM_LOW_CHARGE,
            "Alarm Low Charge",
            READ_WRITE,
            FLOAT,
            units="Ah",
            description=f"Low-battery alarm when Actual Charge falls below this; 0 disables the alarm "
            f"({_MIB} batteryAlarmLowCharge).",
        ),
        res(
            SpmpBatteryResource.ALARM_LOW_VOLTAGE,
            "Alarm Low Voltage",
            READ_WRITE,
            FLOAT,
            units="V",
            description=f"Low-battery alarm when Actual Voltage falls below this; 0 disables the alarm "
            f"({_MIB} batteryAlarmLowVoltage).",
        ),
        res(
            SpmpBatteryResource.ALARM_LOW_CAPACITY,
            "Alarm Low Capacity",
            READ_WRITE,
            FLOAT,
            units="Ah",
            description=f"Aging alarm when Actual Capacity falls below this; 0 disables the alarm "
            f"({_MIB} batteryAlarmLowCapacity).",
        ),
        res(
            SpmpBatteryResource.ALARM_HIGH_CYCLE_COUNT,
            "Alarm High Cycle Count",
            READ_WRITE,
            UNSIGNED,
            description=f"Aging alarm when Charging Cycle Count rises above this; 0 disables the alarm "
            f"({_MIB} batteryAlarmHighCycleCount).",
        ),
        res(
            SpmpBatteryResource.ALARM_HIGH_TEMPERATURE,
            "Alarm High Temperature",
            READ_WRITE,
            FLOAT,
            units="Cel",
            description=f"Temperature alarm when Temperature rises above this; absent disables the alarm "
            f"({_MIB} batteryAlarmHighTemperature).",
        ),
        res(
            SpmpBatteryResource.ALARM_LOW_TEMPERATURE,
            "Alarm Low Temperature",
            READ_WRITE,
            FLOAT,
            units="Cel",
            description=f"Temperature alarm when Temperature falls below this; absent disables the alarm "
            f"({_MIB} batteryAlarmLowTemperature).",
        ),
        res(
            SpmpBatteryResource.CELL_IDENTIFIER,
            "Cell Identifier",
            READ,
            STRING,
            description=f"The cell or cells that triggered the last low, critical, aging or temperature alarm; "
            f"empty initially ({_MIB} batteryCellIdentifier).",
        ),
        res(
            SpmpBatteryResource.STATE_OF_CHARGE,
            "State of Charge",
            READ,
            INTEGER,
            range="0..100",
            units="/100",
            description="SPMP addition: Actual Charge as a percentage of Actual Capacity (or of Design Capacity "
            "when Actual Capacity is unknown).",
        ),
        res(
            SpmpBatteryResource.TIMESTAMP,
            "Timestamp",
            READ,
            TIME,
            description="SPMP addition: when the measurements (15–18, 26) were last updated (IPSO common "
            "resource 5518).",
        ),
    ],
)
