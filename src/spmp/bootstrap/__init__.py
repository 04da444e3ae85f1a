"""The LwM2M bootstrap server: per-endpoint provisioning of management servers (``spmp bootstrap``).

:mod:`spmp.bootstrap.session` plans one client's bootstrap sequence (pure);
:mod:`spmp.bootstrap.server` runs it over CoAP and DTLS. See docs/bootstrap.md.
"""
