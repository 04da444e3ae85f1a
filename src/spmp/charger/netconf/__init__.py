"""The charger's NETCONF side: the BTS behind Smart Load (BTS) 26244 (docs/smart-load.md, "The NETCONF bridge").

- :mod:`~spmp.charger.netconf.mapping`: declarative LwM2M resource ↔ YANG node mappings (TOML files;
  ``maps/spmp-bts.toml`` for the SPMP BTS);
- :mod:`~spmp.charger.netconf.client`: an asyncio NETCONF client over ncclient with reconnect and
  typed errors;
- :mod:`~spmp.charger.netconf.bridge`: the Smart Load (BTS) object enabler on the charger and the
  rules executor's NETCONF target writer.
"""
