"""SPMP Smart Load (BTS) (26244) and Smart Load Rules (26245): shedding a base station's load at night.

Smart Load (BTS) lists what the charger can change in the base station over NETCONF to lower its
draw. The capabilities depend on the BTS, so every resource is optional: a BTS's object instance
carries exactly the knobs its manufacturer supports. The charger translates writes into NETCONF
edits of the BTS's YANG model. Duty Cycle reuses the IPSO common resource 5828 (Load Control's duty
cycle: share of time the load is active, in percent).

Smart Load Rules say *when* to turn a knob: as the battery voltage falls through a rule's threshold,
the charger writes the rule's value into the named resource (usually one of Smart Load (BTS)).

Decisions where the seed is vague, recorded here and in the resource descriptions:

* RF Power Output is a Float in dBm (0..50 dBm: 1 mW to 100 W per transceiver chain, measured at
  the antenna connector); the BTS applies the highest step it supports that does not exceed it.
* Duty Cycle has a period: SPMP adds Duty Cycle Period (seconds), because a duty cycle alone does
  not say whether the BTS sleeps a minute in every two or twelve hours in every day.
* Channel Bandwidth is a Float in MHz (0.1..100) covering GSM (0.2), LTE (1.4..20) and NR carriers.
* A rule is active while the battery voltage is at or below its threshold; it becomes inactive again
  only when the voltage rises above threshold + Hysteresis (an SPMP addition, default 2 % of the
  threshold when absent), so that a sagging battery cannot make the load flap. For each target
  resource the active rule with the lowest threshold wins; when no rule for a resource is active,
  the charger restores the value the resource had before the first rule took effect (or the value
  an operator wrote by hand while rules held it: a manual write overrides the rules then holding the
  resource until they clear).
* A rule changes state only after its condition held for the confirmation time (60 s by default,
  rejecting load-step dips), stays in each state at least Minimum Dwell (an SPMP addition, default
  300 s), and rules fire from the highest threshold down and restore in reverse; Fault (an SPMP
  addition, read-only) reports a target the charger cannot write. docs/smart-load.md has the
  complete semantics.
* Value holds the plain-text (content format 0) encoding of the value, and Type names the LwM2M
  data type to decode it as: String, Integer, Unsigned Integer, Float, Boolean, Opaque (Value taken as
  raw bytes), Time or Objlnk. Text keeps rules readable in every content format.
"""

from __future__ import annotations

from enum import IntEnum

from spmp.lwm2m.objects import ids
from spmp.lwm2m.objects.define import (
    BOOLEAN,
    FLOAT,
    INTEGER,
    OPAQUE,
    READ,
    READ_WRITE,
    STRING,
    define_object,
    res,
)

__all__ = [
    "RULE_VALUE_TYPES",
    "SMART_LOAD_BTS",
    "SMART_LOAD_RULES",
    "SmartLoadBtsResource",
    "SmartLoadRuleResource",
]

#: The values a rule's Type may take: LwM2M data type names, as DDF files spell them.
RULE_VALUE_TYPES = ("String", "Integer", "Unsigned Integer", "Float", "Boolean", "Opaque", "Time", "Objlnk")


class SmartLoadBtsResource(IntEnum):
    """Resource ids of the Smart Load (BTS) object."""

    LOGGING_ENABLED = 0
    TRANSCEIVER_CHAIN_ENABLED = 1
    CHANNEL_BANDWIDTH = 2
    USER_LIMIT = 3
    BACKHAUL_ENABLED = 4
    LTE_DATA_ENABLED = 5
    EDGE_DATA_ENABLED = 6
    GPRS_DATA_ENABLED = 7
    SOFTWARE_UPDATES_ENABLED = 8
    EMERGENCY_CALLS_ONLY = 9
    SLEEP = 10
    RF_POWER_OUTPUT = 11
    DUTY_CYCLE_PERIOD = 12
    DUTY_CYCLE = 5828


class SmartLoadRuleResource(IntEnum):
    """Resource ids of the Smart Load Rules object."""

    VOLTAGE_THRESHOLD = 0
    OBJECT_ID = 1
    OBJECT_INSTANCE_ID = 2
    RESOURCE_ID = 3
    VALUE = 4
    TYPE = 5
    HYSTERESIS = 6
    ACTIVE = 7
    MINIMUM_DWELL = 8
    FAULT = 9


SMART_LOAD_BTS = define_object(
    ids.SMART_LOAD_BTS,
    "Smart Load (BTS)",
    version="1.0",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=False,
    description="Power-relevant configuration of a base station powered by the charger, applied by the "
    "charger over NETCONF. Every resource is optional: an instance has the settings its BTS "
    "supports.",
    resources=[
        res(
            SmartLoadBtsResource.LOGGING_ENABLED,
            "Logging Enabled",
            READ_WRITE,
            BOOLEAN,
            description="Enable or disable the BTS's logging (saves storage writes and CPU).",
        ),
        res(
            SmartLoadBtsResource.TRANSCEIVER_CHAIN_ENABLED,
            "Transceiver Chain Enabled",
            READ_WRITE,
            BOOLEAN,
            description="Enable or disable the BTS's switchable transceiver (RF) chain; turning a chain off is "
            "the largest single saving.",
        ),
        res(
            SmartLoadBtsResource.CHANNEL_BANDWIDTH,
            "Channel Bandwidth",
            READ_WRITE,
            FLOAT,
            range="0.1..100",
            units="MHz",
            description="Carrier bandwidth, e.g. 0.2 (GSM) or 1.4, 3, 5, 10, 15, 20 (LTE); the BTS rounds to "
            "the nearest bandwidth it supports.",
        ),
        res(
            SmartLoadBtsResource.USER_LIMIT,
            "User Limit",
            READ_WRITE,
            INTEGER,
            range="0..65535",
            description="Maximum number of simultaneously served users (subscribers).",
        ),
        res(
            SmartLoadBtsResource.BACKHAUL_ENABLED,
            "Backhaul Enabled",
            READ_WRITE,
            BOOLEAN,
            description="False switches the backhaul off: the BTS then only switches calls locally.",
        ),
        res(
            SmartLoadBtsResource.LTE_DATA_ENABLED,
            "LTE Data Enabled",
            READ_WRITE,
            BOOLEAN,
            description="Enable or disable LTE data service.",
        ),
        res(
            SmartLoadBtsResource.EDGE_DATA_ENABLED,
            "EDGE Data Enabled",
            READ_WRITE,
            BOOLEAN,
            description="Enable or disable EDGE data service.",
        ),
        res(
            SmartLoadBtsResource.GPRS_DATA_ENABLED,
            "GPRS Data Enabled",
            READ_WRITE,
            BOOLEAN,
            description="Enable or disable GPRS data service.",
        ),
        res(
            SmartLoadBtsResource.SOFTWARE_UPDATES_ENABLED,
            "Software Updates Enabled",
            READ_WRITE,
            BOOLEAN,
            description="Allow or forbid the BTS to download and install software updates.",
        ),
        res(
            SmartLoadBtsResource.EMERGENCY_CALLS_ONLY,
            "Emergency Calls Only",
            READ_WRITE,
            BOOLEAN,
            description="True restricts service to emergency calls.",
        ),
        res(
            SmartLoadBtsResource.DUTY_CYCLE,
            "Duty Cycle",
            READ_WRITE,
            INTEGER,
            range="0..100",
            units="/100",
            description="Share of each Duty Cycle Period during which the BTS is in service, in percent; 100 "
            "is always on (IPSO common resource 5828).",
        ),
        res(
            SmartLoadBtsResource.DUTY_CYCLE_PERIOD,
            "Duty Cycle Period",
            READ_WRITE,
            INTEGER,
            range="60..86400",
            units="s",
            description="SPMP addition: the period Duty Cycle applies to; the BTS is in service for the first "
            "Duty Cycle percent of each period.",
        ),
        res(
            SmartLoadBtsResource.SLEEP,
            "Sleep",
            READ_WRITE,
            BOOLEAN,
            description="True puts the BTS to sleep (minimum draw, no service); writing false wakes it.",
        ),
        res(
            SmartLoadBtsResource.RF_POWER_OUTPUT,
            "RF Power Output",
            READ_WRITE,
            FLOAT,
            range="0..50",
            units="dBm",
            description="Transmit power per transceiver chain at the antenna connector; lowering it shrinks the "
            "service area and the draw. The BTS applies its highest supported step not above it.",
        ),
    ],
)

SMART_LOAD_RULES = define_object(
    ids.SMART_LOAD_RULES,
    "Smart Load Rules",
    version="1.0",
    lwm2m_version="1.1",
    multiple=True,
    mandatory=False,
    description="One rule of the charger's smart-load policy: when the battery voltage falls to Voltage "
    "Threshold, write Value into the resource Object ID / Object Instance ID / Resource ID.",
    resources=[
        res(
            SmartLoadRuleResource.VOLTAGE_THRESHOLD,
            "Voltage Threshold",
            READ_WRITE,
            FLOAT,
            mandatory=True,
            range="0..1000",
            units="V",
            description="Battery voltage at or below which the rule is active.",
        ),
        res(
            SmartLoadRuleResource.OBJECT_ID,
            "Object ID",
            READ_WRITE,
            INTEGER,
            mandatory=True,
            range="0..65534",
            description="Object of the resource the rule writes, usually Smart Load (BTS) 26244.",
        ),
        res(
            SmartLoadRuleResource.OBJECT_INSTANCE_ID,
            "Object Instance ID",
            READ_WRITE,
            INTEGER,
            mandatory=True,
            range="0..65534",
            description="Instance of the resource the rule writes.",
        ),
        res(
            SmartLoadRuleResource.RESOURCE_ID,
            "Resource ID",
            READ_WRITE,
            INTEGER,
            mandatory=True,
            range="0..65534",
            description="Resource the rule writes.",
        ),
        res(
            SmartLoadRuleResource.VALUE,
            "Value",
            READ_WRITE,
            OPAQUE,
            mandatory=True,
            description="Value to write while the rule is active, as its plain-text (content format 0) "
            "encoding in UTF-8, e.g. b'50', b'1' (Boolean true) or b'26244:0'; raw bytes when Type "
            "is Opaque.",
        ),
        res(
            SmartLoadRuleResource.TYPE,
            "Type",
            READ_WRITE,
            STRING,
            mandatory=True,
            description="LwM2M data type to decode Value as: " + ", ".join(RULE_VALUE_TYPES) + ".",
        ),
        res(
            SmartLoadRuleResource.HYSTERESIS,
            "Hysteresis",
            READ_WRITE,
            FLOAT,
            range="0..100",
            units="V",
            description="SPMP addition: the rule stays active until the battery voltage rises above Voltage "
            "Threshold plus this margin; absent means 2 % of Voltage Threshold.",
        ),
        res(
            SmartLoadRuleResource.ACTIVE,
            "Active",
            READ,
            BOOLEAN,
            description="SPMP addition: true while the charger applies this rule.",
        ),
        res(
            SmartLoadRuleResource.MINIMUM_DWELL,
            "Minimum Dwell",
            READ_WRITE,
            INTEGER,
            range="0..86400",
            units="s",
            description="SPMP addition: the rule stays active (or inactive) at least this long after a change, "
            "and the rules never change its target twice within this time; absent means 300 s.",
        ),
        res(
            SmartLoadRuleResource.FAULT,
            "Fault",
            READ,
            BOOLEAN,
            description="SPMP addition: true while the charger cannot write the rule's target (unreachable or "
            "refusing) and keeps retrying with backoff; the Smart Load Fault alert is raised with it.",
        ),
    ],
)
