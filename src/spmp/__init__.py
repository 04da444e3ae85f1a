"""SPMP: Smart Power Management Protocol for solar-powered telecom sites."""

__version__ = "0.1.0"
