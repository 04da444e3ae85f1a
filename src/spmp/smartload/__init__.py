"""Smart load: battery-voltage rules that shed a site's load and restore it (docs/smart-load.md).

:mod:`~spmp.smartload.rules` is the pure state machine, :mod:`~spmp.smartload.executor` carries its
decisions out through target writers with retries, :mod:`~spmp.smartload.objects` is the Smart Load
Rules (26245) object on the charger, :mod:`~spmp.smartload.defaults` the default rule set.
"""
