"""The BTS's NETCONF server over SSH (RFC 6241, RFC 6242), written on paramiko directly.

One thread accepts connections; each connection gets a thread that runs the SSH handshake, waits for
the ``netconf`` subsystem and then serves RPCs one at a time. Hellos use end-of-message framing
(``]]>]]>``); when both sides announce ``base:1.1`` the session switches to chunked framing.

Operations: get, get-config (running, subtree filter), edit-config (running; merge, replace, create,
delete, remove; default-operation), lock, unlock, close-session, kill-session. Anything else is
``operation-not-supported``. See docs/bts.md for why this is not built on the PyPI ``netconf`` package.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import paramiko
from lxml import etree
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_SUCCEEDED

from spmp.bts.datastore import subtree_filter
from spmp.bts.device import BtsDevice
from spmp.bts.errors import NetconfError
from spmp.bts.model import BTS_NS, MODULE_NAME, MODULE_REVISION, NC_NS

__all__ = [
    "BASE_1_0",
    "BASE_1_1",
    "CAPABILITIES",
    "HOST_KEY_FILE",
    "BtsNetconfServer",
    "load_authorized_keys",
    "load_or_create_host_key",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class _RoutineDisconnects(logging.Filter):
    """paramiko logs a client that drops its TCP connection abruptly as an ERROR ("Socket exception:
    Connection reset by peer"); for a server that is routine — the charger's host-key probe does
    exactly that — so it is logged at DEBUG instead, and real transport errors stay errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "Connection reset by peer" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("paramiko.transport").addFilter(_RoutineDisconnects())

BASE_1_0 = "urn:ietf:params:netconf:base:1.0"
BASE_1_1 = "urn:ietf:params:netconf:base:1.1"
CAPABILITIES = (
    BASE_1_0,
    BASE_1_1,
    "urn:ietf:params:netconf:capability:writable-running:1.0",
    # Edits are applied to a copy and kept only when all of them succeed.
    "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
    f"{BTS_NS}?module={MODULE_NAME}&revision={MODULE_REVISION}",
)
HOST_KEY_FILE = "ssh_host_ecdsa_key"
EOM = b"]]>]]>"
MAX_MESSAGE = 4 * 1024 * 1024  # far above any real request; bounds what a client can make us buffer
HANDSHAKE_TIMEOUT = 30.0
_NC = f"{{{NC_NS}}}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)
# A chunk header (size 1..4294967295, no leading zero) or the end-of-chunks marker, and their prefixes.
_CHUNK_HEADER = re.compile(rb"\n#([1-9][0-9]{0,9}|#)\n")
_CHUNK_PREFIX = re.compile(rb"(\n(#(#|[1-9][0-9]{0,9})?)?)?")


def load_or_create_host_key(data_dir: Path) -> paramiko.PKey:
    """The server's SSH host key, DIR/ssh_host_ecdsa_key; generated (ECDSA P-256) the first time."""
    path = data_dir / HOST_KEY_FILE
    if path.exists():
        try:
            return paramiko.ECDSAKey.from_private_key_file(str(path))
        except paramiko.SSHException as exc:
            raise ValueError(f"{path}: not an ECDSA private key ({exc})") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    key = paramiko.ECDSAKey.generate(bits=256)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    key.write_private_key_file(str(tmp))
    tmp.replace(path)
    return key


def load_authorized_keys(path: Path) -> list[paramiko.PKey]:
    """Public keys from an OpenSSH ``authorized_keys``-style file (``type base64 [comment]`` lines)."""
    keys: list[paramiko.PKey] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                kind, data, *_ = line.split()
                keys.append(paramiko.PKey.from_type_string(kind, base64.b64decode(data)))
            except (ValueError, paramiko.SSHException) as exc:
                raise ValueError(f"{path}:{number}: not a public key ({exc})") from None
    return keys


class _SshServer(paramiko.ServerInterface):
    """Authentication and channel policy: password and/or public key per user; only the netconf subsystem."""

    def __init__(self, passwords: Mapping[str, str], keys: Mapping[str, Sequence[paramiko.PKey]]) -> None:
        self.passwords = passwords
        self.keys = keys
        self.subsystem = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        kinds = [k for k, ok in (("password", username in self.passwords), ("publickey", username in self.keys)) if ok]
        return ",".join(kinds) or "password"

    def check_auth_password(self, username: str, password: str) -> int:
        expected = self.passwords.get(username)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if any(key == allowed for allowed in self.keys.get(username, ())):
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED if kind == "session" else OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != "netconf":
            return False
        self.subsystem.set()
        return True


class _SessionClosedError(Exception):
    """The peer went away, the session was killed, or the server is stopping."""


class _Session:
    """One NETCONF session on an SSH channel."""

    def __init__(self, server: BtsNetconfServer, session_id: int, channel: paramiko.Channel) -> None:
        self.server = server
        self.id = session_id
        self.channel = channel
        self.chunked = False
        self.closing = False
        self._buffer = b""

    # ------------------------------------------------------------------------------------ framing

    def _recv(self) -> None:
        while True:
            if self.closing or self.server.stopping:
                raise _SessionClosedError
            try:
                data = self.channel.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise _SessionClosedError
            self._buffer += data
            if len(self._buffer) > MAX_MESSAGE + 64:
                raise _SessionClosedError  # a message that big is an attack or a bug: drop the session
            return

    def read_message(self) -> bytes:
        """The next message, unframed."""
        if not self.chunked:
            while (end := self._buffer.find(EOM)) < 0:
                self._recv()
            message, self._buffer = self._buffer[:end], self._buffer[end + len(EOM) :]
            return message
        parts: list[bytes] = []
        size = 0
        while True:
            while (match := _CHUNK_HEADER.match(self._buffer)) is None:
                # Not a whole header yet: what we have must be the start of one, else it is a framing
                # error, which ends the session (RFC 6242 4.2).
                if not _CHUNK_PREFIX.fullmatch(self._buffer):
                    raise _SessionClosedError
                self._recv()
            self._buffer = self._buffer[match.end() :]
            if match.group(1) == b"#":
                return b"".join(parts)
            length = int(match.group(1))
            size += length
            if size > MAX_MESSAGE:
                raise _SessionClosedError
            while len(self._buffer) < length:
                self._recv()
            parts.append(self._buffer[:length])
            self._buffer = self._buffer[length:]

    def send(self, elem: etree._Element) -> None:
        data = etree.tostring(elem, xml_declaration=True, encoding="UTF-8")
        framed = b"\n#%d\n%s\n##\n" % (len(data), data) if self.chunked else data + EOM
        self.channel.sendall(framed)

    # -------------------------------------------------------------------------------------- session

    def run(self) -> None:
        hello = etree.Element(_NC + "hello", nsmap={None: NC_NS})
        caps = etree.SubElement(hello, _NC + "capabilities")
        for cap in CAPABILITIES:
            etree.SubElement(caps, _NC + "capability").text = cap
        etree.SubElement(hello, _NC + "session-id").text = str(self.id)
        self.send(hello)
        try:
            client = etree.fromstring(self.read_message(), _PARSER)
        except etree.XMLSyntaxError:
            return
        client_caps = {(c.text or "").strip() for c in client.iterfind(f"{_NC}capabilities/{_NC}capability")}
        # RFC 6241 8.1: a client hello with a session-id, or with no base capability we speak, ends it.
        if client.tag != _NC + "hello" or client.find(_NC + "session-id") is not None:
            return
        if BASE_1_1 in client_caps:
            self.chunked = True
        elif BASE_1_0 not in client_caps:
            return
        log.info("netconf session started", extra={"session": self.id, "base": "1.1" if self.chunked else "1.0"})
        while not self.closing:
            self.handle(self.read_message())

    def handle(self, message: bytes) -> None:
        try:
            rpc = etree.fromstring(message, _PARSER)
        except etree.XMLSyntaxError as exc:
            self._reply(None, NetconfError("malformed-message", f"not XML: {exc}", error_type="rpc"))
            return
        if rpc.tag != _NC + "rpc":
            return  # RFC 6241 has no reply for a non-rpc message; ignore it
        if rpc.get("message-id") is None:
            error = NetconfError(
                "missing-attribute",
                "rpc without message-id",
                error_type="rpc",
                info={"bad-attribute": "message-id", "bad-element": "rpc"},
            )
            self._reply(rpc, error)
            return
        try:
            self._reply(rpc, self.server.dispatch(self, rpc))
        except NetconfError as error:
            self._reply(rpc, error)

    def _reply(self, rpc: etree._Element | None, content: etree._Element | NetconfError | None) -> None:
        reply = etree.Element(_NC + "rpc-reply", nsmap={None: NC_NS})
        if rpc is not None:  # RFC 6241 4.2: echo every attribute of the rpc
            for name, value in rpc.attrib.items():
                reply.set(name, value)
        if isinstance(content, NetconfError):
            reply.append(content.to_xml())
        elif content is None:
            etree.SubElement(reply, _NC + "ok")
        else:
            reply.append(content)
        self.send(reply)


class BtsNetconfServer:
    """NETCONF over SSH for a :class:`BtsDevice`, on ``host:port`` (port 0: any free port; see ``.port``).

    ``users`` maps user names to passwords; ``authorized_keys`` maps user names to public keys they
    may log in with. Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        device: BtsDevice,
        *,
        host_key: paramiko.PKey,
        host: str = "127.0.0.1",
        port: int = 8300,
        users: Mapping[str, str] | None = None,
        authorized_keys: Mapping[str, Sequence[paramiko.PKey]] | None = None,
    ) -> None:
        self.device = device
        self.host = host
        self.port = port
        self._host_key = host_key
        self._users = dict(users or {})
        self._keys = {name: list(keys) for name, keys in (authorized_keys or {}).items()}
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._transports: dict[int, paramiko.Transport] = {}
        self._sessions: dict[int, _Session] = {}
        self._next_id = 1
        self._guard = threading.Lock()  # sessions, transports, the lock owner
        self.lock_owner: int | None = None
        self.stopping = False

    def __enter__(self) -> BtsNetconfServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind and start accepting connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(16)
            listener.settimeout(0.2)  # so the accept loop notices close()
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "bts-netconf-accept")
        log.info("netconf server listening", extra={"host": self.host, "port": self.port})

    def close(self) -> None:
        """Stop accepting, end every session, and wait for the threads."""
        self.stopping = True
        if self._listener is not None:
            self._listener.close()
        with self._guard:
            transports = list(self._transports.values())
        for transport in transports:
            transport.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            if self.stopping:
                sock.close()
                return
            with self._guard:
                session_id, self._next_id = self._next_id, self._next_id + 1
            self._spawn(self._connection, f"bts-netconf-{session_id}", sock, session_id)

    def _connection(self, sock: socket.socket, session_id: int) -> None:
        transport = paramiko.Transport(sock)
        with self._guard:
            self._transports[session_id] = transport
        session: _Session | None = None
        try:
            transport.add_server_key(self._host_key)
            policy = _SshServer(self._users, self._keys)
            transport.start_server(server=policy)
            channel = self._wait(lambda: transport.accept(0.1), transport)
            if channel is None or not self._wait(lambda: policy.subsystem.wait(0.1), transport):
                return
            channel.settimeout(0.5)
            session = _Session(self, session_id, channel)
            with self._guard:
                self._sessions[session_id] = session
            session.run()
        except (_SessionClosedError, paramiko.SSHException, EOFError, OSError) as exc:
            log.debug("netconf connection ended", extra={"session": session_id, "reason": repr(exc)})
        finally:
            with self._guard:
                self._sessions.pop(session_id, None)
                self._transports.pop(session_id, None)
                if self.lock_owner == session_id:  # RFC 6241 7.5: a session's end releases its lock
                    self.lock_owner = None
            transport.close()
            sock.close()

    def _wait(self, poll: Callable[[], _T | None], transport: paramiko.Transport) -> _T | None:
        # Poll in short steps: paramiko's accept() is not woken when the transport closes, and a
        # stopping server must not wait out the whole handshake timeout.
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while not self.stopping and transport.is_active() and time.monotonic() < deadline:
            if result := poll():
                return result
        return None

    # -------------------------------------------------------------------------------------- operations

    def dispatch(self, session: _Session, rpc: etree._Element) -> etree._Element | None:
        """Run one RPC; return the reply's content (None for ``<ok/>``) or raise NetconfError."""
        op = next(rpc.iterchildren(tag=etree.Element), None)
        if op is None:
            raise NetconfError("missing-element", "rpc without an operation", error_type="rpc")
        qname = etree.QName(op)
        handler = getattr(self, "_rpc_" + qname.localname.replace("-", "_"), None)
        if qname.namespace != NC_NS or handler is None:
            raise NetconfError(
                "operation-not-supported",
                f"operation {qname.localname!r} is not supported",
                error_type="protocol",
                info={"bad-element": qname.localname},
            )
        result: etree._Element | None = handler(session, op)
        return result

    @staticmethod
    def _datastore(op: etree._Element, name: str) -> None:
        elem = op.find(_NC + name)
        which = next(elem.iterchildren(tag=etree.Element), None) if elem is not None else None
        if which is None:
            raise NetconfError(
                "missing-element", f"{name} is missing", error_type="protocol", info={"bad-element": name}
            )
        if which.tag != _NC + "running":
            raise NetconfError(
                "operation-not-supported",
                f"only the running datastore is supported, not {etree.QName(which).localname}",
                error_type="protocol",
                info={"bad-element": name},
            )

    def _data(self, bts_children: bool, op: etree._Element) -> etree._Element:
        running = self.device.running()
        if bts_children:  # get: configuration and state
            bts = running.find(f"{{{BTS_NS}}}bts")
            if bts is None:
                bts = etree.SubElement(running, f"{{{BTS_NS}}}bts", nsmap={None: BTS_NS})
            bts.append(self.device.state_xml())
        data = etree.Element(_NC + "data", nsmap={None: NC_NS})
        filter_elem = op.find(_NC + "filter")
        if filter_elem is None:
            data[:] = list(running)
            return data
        kind = filter_elem.get("type", "subtree")
        if kind != "subtree":
            raise NetconfError(
                "bad-attribute",
                f"filter type {kind!r}: only subtree filters are supported",
                error_type="protocol",
                info={"bad-attribute": "type", "bad-element": "filter"},
            )
        data[:] = subtree_filter(list(running), filter_elem)
        return data

    def _rpc_get(self, session: _Session, op: etree._Element) -> etree._Element:
        return self._data(True, op)

    def _rpc_get_config(self, session: _Session, op: etree._Element) -> etree._Element:
        self._datastore(op, "source")
        return self._data(False, op)

    def _rpc_edit_config(self, session: _Session, op: etree._Element) -> None:
        self._datastore(op, "target")
        self._check_lock(session)  # before parsing the options: a locked datastore is the first thing to say
        default_operation = (op.findtext(_NC + "default-operation") or "merge").strip()
        test_option = (op.findtext(_NC + "test-option") or "test-then-set").strip()
        error_option = (op.findtext(_NC + "error-option") or "stop-on-error").strip()
        if test_option != "test-then-set" or error_option == "continue-on-error":
            raise NetconfError(
                "operation-not-supported",
                f"test-option {test_option} / error-option {error_option} is not supported",
                error_type="protocol",
            )
        config = op.find(_NC + "config")
        if config is None:
            raise NetconfError(
                "missing-element",
                "edit-config needs <config> (<url> is not supported)",
                error_type="protocol",
                info={"bad-element": "config"},
            )
        with self._guard:  # so no other session can take the lock between the check and the edit
            self._check_lock(session)
            self.device.edit(config, default_operation)

    def _check_lock(self, session: _Session) -> None:
        owner = self.lock_owner
        if owner is not None and owner != session.id:
            raise NetconfError(
                "in-use",
                f"the running datastore is locked by session {owner}",
                error_type="protocol",
                info={"session-id": str(owner)},
            )

    def _rpc_lock(self, session: _Session, op: etree._Element) -> None:
        self._datastore(op, "target")
        with self._guard:
            if self.lock_owner is not None:
                raise NetconfError(
                    "lock-denied",
                    f"the running datastore is locked by session {self.lock_owner}",
                    error_type="protocol",
                    info={"session-id": str(self.lock_owner)},
                )
            self.lock_owner = session.id

    def _rpc_unlock(self, session: _Session, op: etree._Element) -> None:
        self._datastore(op, "target")
        with self._guard:
            if self.lock_owner != session.id:
                raise NetconfError("operation-failed", "this session does not hold the lock", error_type="protocol")
            self.lock_owner = None

    def _rpc_close_session(self, session: _Session, op: etree._Element) -> None:
        session.closing = True  # the <ok/> goes out first; then run() returns and the channel closes

    def _rpc_kill_session(self, session: _Session, op: etree._Element) -> None:
        text = (op.findtext(_NC + "session-id") or "").strip()
        with self._guard:
            victim = self._transports.get(int(text)) if text.isdigit() and int(text) != session.id else None
            if victim is not None and self.lock_owner == int(text):
                self.lock_owner = None  # RFC 6241 7.9: locks are released, operations aborted
        if victim is None:
            raise NetconfError(
                "invalid-value", f"no other session {text!r}", error_type="protocol", info={"bad-element": "session-id"}
            )
        victim.close()
