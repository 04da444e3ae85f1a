"""The simulated base station (BTS): a NETCONF server over SSH whose power draw follows its configuration.

* :mod:`spmp.bts.model` — the spmp-bts YANG module as Python (schema, :class:`BtsConfig`);
* :mod:`spmp.bts.power` — the power model, :func:`power_draw_watts`;
* :mod:`spmp.bts.datastore` — edit-config and subtree filtering on the running datastore;
* :mod:`spmp.bts.device` — :class:`BtsDevice`: configuration, persistence, state, power hooks;
* :mod:`spmp.bts.server` — :class:`BtsNetconfServer`: NETCONF 1.0/1.1 over SSH (paramiko).
"""

from spmp.bts.device import BtsDevice, BtsState
from spmp.bts.errors import NetconfError
from spmp.bts.model import BTS_NS, FACTORY_CONFIG, BtsConfig, ChainConfig, yang_text
from spmp.bts.power import dbm_to_watts, power_draw_watts
from spmp.bts.server import BtsNetconfServer, load_authorized_keys, load_or_create_host_key

__all__ = [
    "BTS_NS",
    "FACTORY_CONFIG",
    "BtsConfig",
    "BtsDevice",
    "BtsNetconfServer",
    "BtsState",
    "ChainConfig",
    "NetconfError",
    "dbm_to_watts",
    "load_authorized_keys",
    "load_or_create_host_key",
    "power_draw_watts",
    "yang_text",
]
