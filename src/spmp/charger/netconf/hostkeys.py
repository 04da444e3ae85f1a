"""Checking the BTS's SSH host key before the charger logs in (trust on first use, or a pinned fingerprint).

The charger sends its BTS password (or proves its key) only to a BTS whose host key it trusts:

* ``pinned`` (``spmp charger --bts-host-key-fingerprint SHA256:...``, the OpenSSH format that
  ``ssh-keygen -lf`` prints): only a key with that fingerprint is accepted;
* otherwise trust on first use with ``known_hosts`` (OpenSSH format, ``DIR/known_hosts`` in the
  charger's data directory): the first key the BTS shows is recorded (atomically) and from then on
  only that key is accepted.

A different key is refused with :class:`HostKeyMismatchError` naming both fingerprints and what to do
(the BTS was replaced or re-keyed: delete its line from known_hosts, or pin the new fingerprint); the
charger treats it like an unreachable BTS (no session, Smart Load Fault raised) and logs it as an error.

How: :func:`probe_host_key` opens an SSH transport only far enough to see the server's key, the policy
checks it, and the NETCONF session is then opened with ncclient's ``hostkey_b64`` set to exactly that
key, so the session that authenticates is guaranteed to be talking to the key that was checked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import threading
from pathlib import Path as FilePath

import paramiko

__all__ = [
    "HostKeyError",
    "HostKeyMismatchError",
    "HostKeyPolicy",
    "fingerprint",
    "normalize_fingerprint",
    "probe_host_key",
]

log = logging.getLogger(__name__)


class HostKeyError(Exception):
    """The BTS's host key cannot be trusted (or checked)."""


class HostKeyMismatchError(HostKeyError):
    """The BTS shows a key other than the pinned or recorded one."""


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH SHA-256 fingerprint: ``SHA256:`` + unpadded base64 of the key blob's digest."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def normalize_fingerprint(text: str) -> str:
    """``SHA256:<base64>`` as OpenSSH prints it (padding dropped); ValueError for anything else."""
    value = text.strip()
    prefix, sep, body = value.partition(":")
    if not sep or prefix.upper() != "SHA256":
        raise ValueError(f"a host key fingerprint is SHA256:<base64> (ssh-keygen -lf), not {text!r}")
    body = body.rstrip("=")
    try:
        digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (32 bytes in base64)")
    return "SHA256:" + body


def _host_id(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyPolicy:
    """Which host keys the charger accepts from ``host:port``; see the module docstring."""

    def __init__(self, *, known_hosts: FilePath | None = None, pinned: str | None = None) -> None:
        self.known_hosts = known_hosts
        self.pinned = None if pinned is None else normalize_fingerprint(pinned)
        self._lock = threading.Lock()

    def expected_types(self, host: str, port: int) -> list[str]:
        """Key types already trusted for the host (negotiate those), empty when none is recorded."""
        if self.pinned is not None or self.known_hosts is None:
            return []
        entry = self._load().lookup(_host_id(host, port))
        return list(entry.keys()) if entry is not None else []

    def check(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Accept ``key`` for ``host:port`` (recording it on first use) or raise HostKeyMismatchError."""
        seen = fingerprint(key)
        where = _host_id(host, port)
        if self.pinned is not None:
            if seen != self.pinned:
                raise HostKeyMismatchError(
                    f"BTS {where} host key mismatch: it shows {seen}, the pinned fingerprint is {self.pinned}; "
                    "refusing to log in (check the BTS, or pin its new fingerprint)"
                )
            return
        if self.known_hosts is None:
            return
        with self._lock:
            keys = self._load()
            entry = keys.lookup(where)
            if entry is None:
                keys.add(where, key.get_name(), key)
                self._save(keys)
                log.warning(
                    "BTS host key trusted on first use",
                    extra={"bts": where, "fingerprint": seen, "known_hosts": str(self.known_hosts)},
                )
                return
            known = entry.get(key.get_name())
            if known is None or known.asbytes() != key.asbytes():
                recorded = ", ".join(fingerprint(k) for k in entry.values())
                raise HostKeyMismatchError(
                    f"BTS {where} host key mismatch: it shows {seen} ({key.get_name()}), {self.known_hosts} has "
                    f"{recorded}; refusing to log in (possible impersonation; if the BTS was replaced or "
                    f"re-keyed, delete its line {where} from {self.known_hosts})"
                )

    def _load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.known_hosts is not None and self.known_hosts.exists():
            keys.load(str(self.known_hosts))
        return keys

    def _save(self, keys: paramiko.HostKeys) -> None:
        assert self.known_hosts is not None
        directory = self.known_hosts.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            keys.save(tmp)
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, self.known_hosts)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def probe_host_key(host: str, port: int, *, timeout: float, key_types: list[str] | None = None) -> paramiko.PKey:
    """The host key ``host:port`` presents in an SSH key exchange (no authentication); OSError/SSHException."""
    sock = socket.create_connection((host, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        if key_types:
            options = transport.get_security_options()
            supported = [t for t in key_types if t in options.key_types]
            if supported:
                options.key_types = supported
        transport.start_client(timeout=timeout)
        key: paramiko.PKey = transport.get_remote_server_key()
        return key
    finally:
        transport.close()
        sock.close()
