"""DTLS with X.509 certificates (LwM2M security mode Certificate), issue 3.

Certificates are made here with the ``cryptography`` package: a CA, a server certificate, client
certificates (CN = endpoint name), and a second, untrusted CA with a client certificate of its own.
Peers: our DtlsClientTransport, SPMP's client engine (Security object mode 2), and libcoap's
``coap-client-openssl -c client.pem -j client.key -R ca.pem`` registering at the ManagementServer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _server_helpers import FAST, coap_client, make_server, needs_libcoap, response_line, run
from spmp.client.accounts import ServerSpec, direct_servers
from spmp.client.device import device_object
from spmp.client.engine import Lwm2mClient
from spmp.client.registration import ClientOptions
from spmp.client.tree import ObjectTree
from spmp.coap.dtls import DtlsHandshakeError, InMemoryPskStore, X509Credentials, subject_cn
from spmp.coap.dtls_client import DtlsClientTransport
from spmp.coap.dtls_server import DtlsServerTransport
from spmp.coap.transport import Peer
from spmp.lwm2m.objects import default_registry
from spmp.store import MemoryStore, SecurityInfo

REGISTRY = default_registry()
SERVER_CN = "spmp-test-server"


@dataclass
class Pki:
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def creds(self, who: str) -> X509Credentials:
        """``who``'s certificate and key, trusting our CA (which signed the server's certificate)."""
        return X509Credentials.from_files(self.path(f"{who}.pem"), self.path(f"{who}.key"), self.path("ca.pem"))

    def der(self, name: str) -> bytes:
        return x509.load_pem_x509_certificate(self.read(name)).public_bytes(serialization.Encoding.DER)

    def key_der(self, name: str) -> bytes:
        key = serialization.load_pem_private_key(self.read(name), None)
        return key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(cn: str | None, org: str = "SPMP tests") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (directory / f"{stem}.key").write_bytes(pem)


def _issue(
    subject: x509.Name,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("SPMP test CA")
    _write(directory, "ca", _issue(ca_name, ca_name, ca_key, ca_key, ca=True), ca_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = _name("Some other CA", "Elsewhere")
    _write(directory, "other-ca", _issue(other_name, other_name, other_key, other_key, ca=True), other_key)
    for stem, cn, issuer, issuer_key, server in (
        ("server", SERVER_CN, ca_name, ca_key, True),
        ("dev-x509", "dev-x509", ca_name, ca_key, False),
        ("dev-two", "dev-two", ca_name, ca_key, False),
        ("no-cn", None, ca_name, ca_key, False),
        ("other-dev", "dev-x509", other_name, other_key, False),  # right name, wrong CA
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(directory, stem, _issue(_name(cn), issuer, issuer_key, key, server=server), key)
    return Pki(directory)


async def _dtls_server(pki: Pki, **kwargs: object) -> DtlsServerTransport:
    psk = InMemoryPskStore({"psk-dev": b"0123456789abcdef"})
    return await DtlsServerTransport.bind(
        "127.0.0.1",
        0,
        psk,
        certificates=pki.creds("server"),
        retransmit_timeout=0.2,
        **kwargs,  # type: ignore[arg-type]
    )


def test_subject_cn_is_parsed_from_der(pki: Pki) -> None:
    assert subject_cn(pki.der("dev-x509.pem")) == "dev-x509"
    assert subject_cn(pki.der("server.pem")) == SERVER_CN
    assert subject_cn(pki.der("no-cn.pem")) is None
    assert subject_cn(b"\x30\x03garbage") is None
    creds = pki.creds("dev-x509")
    assert creds.identity == "dev-x509"
    assert "PRIVATE" not in repr(creds) and str(creds.private_key) not in repr(creds)
    with pytest.raises(ValueError, match="does not belong"):
        X509Credentials.from_bytes(pki.read("dev-x509.pem"), pki.read("dev-two.key"), pki.read("ca.pem"))


def test_mutual_x509_and_psk_on_one_server(pki: Pki) -> None:
    async def main() -> None:
        srv = await _dtls_server(pki)
        got: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()
        srv.set_handler(lambda data, peer: got.put_nowait((data, peer)))
        port = srv.local_address[1]
        cert = await DtlsClientTransport.connect("127.0.0.1", port, certificates=pki.creds("dev-x509"))
        psk = await DtlsClientTransport.connect("127.0.0.1", port, "psk-dev", b"0123456789abcdef")
        try:
            assert cert.peer.identity == SERVER_CN  # the server proved its certificate's CN
            assert "ECDSA" in (cert.cipher or "")
            cert.send(b"hello", cert.peer)
            data, peer = await asyncio.wait_for(got.get(), 5)
            assert (data, peer.identity) == (b"hello", "dev-x509")
            assert srv.session_mode(peer.address) == "certificate"
            psk.send(b"psk", psk.peer)
            data, peer = await asyncio.wait_for(got.get(), 5)
            assert (data, peer.identity, srv.session_mode(peer.address)) == (b"psk", "psk-dev", "psk")
            srv.send(b"down", Peer("127.0.0.1", cert.local_address[1], "dev-x509"))  # server-initiated
            assert srv.stats.handshakes_ok == 2 and srv.stats.certificate_refused == 0
        finally:
            await cert.close()
            await psk.close()
            await srv.close()

    run(main(), timeout=30)


def test_refused_certificates_are_logged_and_counted(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        srv = await _dtls_server(pki)
        port = srv.local_address[1]
        try:
            started = time.perf_counter()
            with pytest.raises(DtlsHandshakeError, match="unknown_ca") as refused:
                await DtlsClientTransport.connect("127.0.0.1", port, certificates=pki.creds("other-dev"))
            took = time.perf_counter() - started
            assert refused.value.alert == 48
            assert took < 2.0, f"a foreign-CA certificate took {took:.2f} s to be refused"
            assert srv.stats.certificate_refused == 1
            failures = [
                r for r in caplog.records if r.getMessage() == "dtls handshake failed" and r.name.endswith("server")
            ]
            assert failures and "certificate" in failures[-1].reason  # type: ignore[attr-defined]
            # A trusted certificate without a CN cannot name an endpoint: refused after the handshake.
            no_cn = await DtlsClientTransport.connect("127.0.0.1", port, certificates=pki.creds("no-cn"))
            await no_cn.close()
            assert srv.stats.certificate_refused == 2
            assert srv.stats.sessions_open == 0
            # And the client side checks the server: a client trusting only the other CA refuses ours.
            wrong_trust = X509Credentials.from_files(
                pki.path("dev-x509.pem"), pki.path("dev-x509.key"), pki.path("other-ca.pem")
            )
            with pytest.raises(DtlsHandshakeError, match="certificate verification failed"):
                await DtlsClientTransport.connect("127.0.0.1", port, certificates=wrong_trust)
        finally:
            await srv.close()

    run(main(), timeout=30)


def _cert_args(pki: Pki, who: str) -> list[str]:
    return ["-c", str(pki.path(f"{who}.pem")), "-j", str(pki.path(f"{who}.key")), "-R", str(pki.path("ca.pem"))]


@needs_libcoap
def test_libcoap_registers_with_a_certificate(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """coap-client-openssl (OpenSSL, mutual X.509) registering at the ManagementServer."""
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with MemoryStore() as store:
            await store.put_security(SecurityInfo("psk-only", "psk-only", b"k" * 16))
            server = make_server(store, insecure=False, certificates=pki.creds("server"))
            await server.start()
            try:
                assert server.coaps_address is not None
                base = f"coaps://127.0.0.1:{server.coaps_address[1]}/rd?lt=60&lwm2m=1.1&b=U"
                register = ["-m", "post", "-t", "40", "-e", "</3/0>,</1/0>"]
                out = await coap_client(*register, *_cert_args(pki, "dev-x509"), base + "&ep=dev-x509", secure=True)
                assert " c:2.01" in response_line(out), out
                registration = server.registration("dev-x509")
                assert registration is not None and registration.dtls_identity == "dev-x509"

                # A trusted certificate, but for another endpoint name: 4.03, logged and counted.
                out = await coap_client(*register, *_cert_args(pki, "dev-two"), base + "&ep=dev-x509", secure=True)
                assert " c:4.03" in response_line(out), out
                assert server.registrations_manager.stats.forbidden == 1
                assert any(getattr(r, "reason", "").startswith("the certificate's CN") for r in caplog.records)
                # Nor can a certificate take an endpoint that has a PSK.
                out = await coap_client(*register, *_cert_args(pki, "dev-two"), base + "&ep=psk-only", secure=True)
                assert " c:4.03" in response_line(out), out

                # A certificate from another CA: the handshake fails, visibly on both sides.
                out = await coap_client(*register, *_cert_args(pki, "other-dev"), base + "&ep=dev-x509", secure=True)
                assert " c:2." not in out
                assert server.dtls is not None and server.dtls.stats.certificate_refused == 1
                refused = [r for r in caplog.records if r.getMessage() == "dtls handshake failed"]
                assert refused and "certificate" in refused[-1].reason  # type: ignore[attr-defined]
            finally:
                await server.stop()

    run(main(), timeout=90)


def test_engine_registers_in_certificate_mode(pki: Pki) -> None:
    """SPMP's client engine with Security object mode 2 (/0/x/3 cert, /0/x/4 CA, /0/x/5 key)."""

    async def main() -> None:
        async with MemoryStore() as store:
            server = make_server(store, insecure=False, certificates=pki.creds("server"))
            await server.start()
            assert server.coaps_address is not None
            uri = f"coaps://127.0.0.1:{server.coaps_address[1]}"
            credentials = (pki.der("dev-x509.pem"), pki.key_der("dev-x509.key"), pki.der("ca.pem"))
            tree = ObjectTree(REGISTRY)
            for enabler in direct_servers([ServerSpec(uri, lifetime=60, certificate=credentials)]):
                tree.add(enabler)
            tree.add(device_object(serial="SN-X509"))
            options = ClientOptions(coap=FAST, local_host="127.0.0.1", deregister_timeout=1.0, handshake_timeout=5.0)
            client = Lwm2mClient("dev-x509", tree, REGISTRY, options=options)
            await client.start()
            try:
                await client.wait_registered(1, timeout=15)
                registration = server.registration("dev-x509")
                assert registration is not None and registration.dtls_identity == "dev-x509"
                assert server.dtls is not None and server.dtls.stats.certificate_refused == 0
                result = await server.read("dev-x509", "/3/0/2")
                assert result.node.value == "SN-X509"  # type: ignore[union-attr]
            finally:
                await client.stop()
                await server.stop()

    run(main(), timeout=60)
