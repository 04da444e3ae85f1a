"""CoAP for SPMP: message codec, transports (UDP, DTLS) and the request/response endpoint."""
