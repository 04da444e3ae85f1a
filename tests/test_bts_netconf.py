"""The BTS NETCONF server against a real client: ncclient over SSH on 127.0.0.1 (ephemeral ports).

ncclient's session thread polls every ``ncclient.transport.session.TICK`` (0.1 s), which caps it at
~10 requests a second; the ``fast_ncclient`` fixture lowers it to 5 ms so the suite stays quick.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import paramiko
import pytest
from lxml import etree
from ncclient import manager
from ncclient.devices.default import DefaultDeviceHandler
from ncclient.operations import RPCError
from ncclient.transport import AuthenticationError
from ncclient.transport import session as nc_session

from spmp.bts import BtsDevice, BtsNetconfServer, load_authorized_keys, load_or_create_host_key
from spmp.bts.server import BASE_1_0, BASE_1_1, HOST_KEY_FILE

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
BTS = "urn:spmp:bts"
USER, PASSWORD = "spmp", "night-shift"
TIMEOUT = 10  # every RPC and connect; a broken server fails the test instead of hanging it


@pytest.fixture(autouse=True)
def fast_ncclient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nc_session, "TICK", 0.005)


class Site:
    """A data dir with a running BTS server; ``restart()`` stops it and starts a new one on the same dir."""

    def __init__(self, data: Path, **server_args: Any) -> None:
        self.data = data
        self.server_args = server_args
        self.device, self.server = self._start()

    def _start(self) -> tuple[BtsDevice, BtsNetconfServer]:
        device = BtsDevice(self.data)
        server = BtsNetconfServer(
            device, host_key=load_or_create_host_key(self.data), port=0, users={USER: PASSWORD}, **self.server_args
        )
        server.start()
        return device, server

    def restart(self) -> None:
        self.server.close()
        self.device, self.server = self._start()

    def connect(self, **kwargs: Any) -> manager.Manager:
        options: dict[str, Any] = {"username": USER, "password": PASSWORD, "look_for_keys": False} | kwargs
        return manager.connect(
            host="127.0.0.1",
            port=self.server.port,
            hostkey_verify=False,
            allow_agent=False,
            timeout=TIMEOUT,
            manager_params={"timeout": TIMEOUT},
            **options,
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path / "bts")
    yield s
    s.server.close()


def _config(body: str) -> str:
    return f'<config xmlns="{NC}" xmlns:nc="{NC}"><bts xmlns="{BTS}">{body}</bts></config>'


def _leaf(reply: Any, path: str) -> str | None:
    """Text of a node in a get/get-config reply, by a path of local names such as 'bts/state/on-air'."""
    node = reply.data_ele.find("/".join(f"{{{BTS}}}{step}" for step in path.split("/")))
    return None if node is None else str(node.text)


def _chain_leaf(reply: Any, chain: int, name: str) -> str | None:
    for entry in reply.data_ele.iterfind(f"{{{BTS}}}bts/{{{BTS}}}transceiver-chain"):
        if entry.findtext(f"{{{BTS}}}id") == str(chain):
            return entry.findtext(f"{{{BTS}}}{name}")
    return None


def _rpc_error(call: Any) -> RPCError:
    with pytest.raises(RPCError) as err:
        call()
    return err.value


# ---------------------------------------------------------------------------------------- hello


def test_hello_negotiates_base_1_1_and_announces_the_module(site: Site) -> None:
    with site.connect() as m:
        caps = set(m.server_capabilities)
        assert {BASE_1_0, BASE_1_1, "urn:ietf:params:netconf:capability:writable-running:1.0"} <= caps
        assert any(c.startswith("urn:spmp:bts?module=spmp-bts&revision=") for c in caps)
        assert _leaf(m.get_config("running"), "bts/sleep") == "false"
        assert site.server._sessions[int(m.session_id)].chunked  # our side switched to chunked framing


class Base10Handler(DefaultDeviceHandler):  # type: ignore[misc]
    """An ncclient client that only speaks NETCONF 1.0 (end-of-message framing)."""

    _BASE_CAPABILITIES = [BASE_1_0]  # noqa: RUF012 - ncclient's own attribute


def test_a_base_1_0_client_gets_end_of_message_framing(site: Site) -> None:
    with site.connect(device_params={"handler": Base10Handler}) as m:
        assert BASE_1_1 not in m.client_capabilities
        m.edit_config(target="running", config=_config("<user-limit>10</user-limit>"))
        assert not site.server._sessions[int(m.session_id)].chunked
        assert _leaf(m.get_config("running"), "bts/user-limit") == "10"


def test_chunked_framing_across_many_chunks_and_framing_errors(site: Site) -> None:
    """A raw SSH client splits one 1.1 message over several chunks; a bad chunk header ends the session."""
    with closing(paramiko.SSHClient()) as client:
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            "127.0.0.1", site.server.port, USER, PASSWORD, allow_agent=False, look_for_keys=False, timeout=TIMEOUT
        )
        transport = client.get_transport()
        assert transport is not None
        with closing(transport.open_session(timeout=TIMEOUT)) as chan:
            chan.settimeout(TIMEOUT)
            chan.invoke_subsystem("netconf")
            hello = f'<hello xmlns="{NC}"><capabilities><capability>{BASE_1_1}</capability></capabilities></hello>'
            chan.sendall(hello.encode() + b"]]>]]>")
            get_config = "<get-config><source><running/></source></get-config>"
            body = f'<rpc message-id="7" xmlns="{NC}" extra="kept">{get_config}</rpc>'.encode()
            chunks = [body[i : i + 9] for i in range(0, len(body), 9)]
            chan.sendall(b"".join(b"\n#%d\n%s" % (len(c), c) for c in chunks) + b"\n##\n")
            received = b""
            while not received.endswith(b"\n##\n") or received.count(b"</rpc-reply>") == 0:
                received += chan.recv(65536)
            reply = etree.fromstring(received.split(b"]]>]]>", 1)[1].split(b"\n", 2)[2].rsplit(b"\n##\n", 1)[0])
            assert reply.get("message-id") == "7" and reply.get("extra") == "kept"
            assert reply.find(f"{{{NC}}}data/{{{BTS}}}bts") is not None
            chan.sendall(b"\n#0\n\n##\n")  # chunk-size 0 is not allowed (RFC 6242 4.2)
            deadline = time.monotonic() + TIMEOUT
            while not chan.closed and chan.recv(65536) and time.monotonic() < deadline:
                pass
            assert chan.recv(65536) == b""


# ------------------------------------------------------------------------------------ retrieval


def test_get_config_with_a_subtree_filter(site: Site) -> None:
    with site.connect() as m:
        flt = f'<bts xmlns="{BTS}"><transceiver-chain><id>1</id><rf-power-output/></transceiver-chain></bts>'
        reply = m.get_config("running", filter=("subtree", flt))
        (bts,) = list(reply.data_ele)
        (entry,) = list(bts)
        assert [(etree.QName(e).localname, e.text) for e in entry] == [("id", "1"), ("rf-power-output", "33.0")]
        assert _leaf(m.get_config("running"), "bts/state") is None  # state is not configuration


def test_get_returns_config_and_state(site: Site) -> None:
    with site.connect() as m:
        reply = m.get(filter=("subtree", f'<bts xmlns="{BTS}"><state/></bts>'))
        assert _leaf(reply, "bts/state/on-air") == "true"
        assert float(_leaf(reply, "bts/state/power-draw-watts") or 0) == pytest.approx(
            site.device.power_draw_watts, abs=0.01
        )
        assert _leaf(reply, "bts/state/serving-users") == "32"
        assert _leaf(reply, "bts/sleep") is None  # filtered out
        assert _leaf(m.get(), "bts/sleep") == "false"


# ---------------------------------------------------------------------------------------- edits


def test_edit_config_merge_replace_create_delete(site: Site) -> None:
    with site.connect() as m:
        m.edit_config(target="running", config=_config("<sleep>true</sleep><duty-cycle>50</duty-cycle>"))
        running = m.get_config("running")
        assert (_leaf(running, "bts/sleep"), _leaf(running, "bts/duty-cycle")) == ("true", "50")

        m.edit_config(
            target="running",
            config=_config(
                '<transceiver-chain nc:operation="create"><id>2</id><enabled>false</enabled></transceiver-chain>'
            ),
        )
        assert _chain_leaf(m.get_config("running"), 2, "enabled") == "false"
        err = _rpc_error(
            lambda: m.edit_config(
                target="running",
                config=_config('<transceiver-chain nc:operation="create"><id>2</id></transceiver-chain>'),
            )
        )
        assert (err.tag, err.path) == ("data-exists", "/bts:bts/bts:transceiver-chain[bts:id='2']")

        m.edit_config(
            target="running", config=_config('<transceiver-chain nc:operation="delete"><id>2</id></transceiver-chain>')
        )
        assert _chain_leaf(m.get_config("running"), 2, "id") is None
        err = _rpc_error(
            lambda: m.edit_config(
                target="running",
                config=_config('<transceiver-chain nc:operation="delete"><id>2</id></transceiver-chain>'),
            )
        )
        assert err.tag == "data-missing"
        m.edit_config(
            target="running", config=_config('<transceiver-chain nc:operation="remove"><id>2</id></transceiver-chain>')
        )

        # replace one chain: rf-power-output not given, so back to its default
        m.edit_config(
            target="running",
            config=_config("<transceiver-chain><id>0</id><rf-power-output>40</rf-power-output></transceiver-chain>"),
        )
        assert _chain_leaf(m.get_config("running"), 0, "rf-power-output") == "40.0"
        m.edit_config(
            target="running",
            config=_config(
                '<transceiver-chain nc:operation="replace"><id>0</id><enabled>false</enabled></transceiver-chain>'
            ),
        )
        running = m.get_config("running")
        assert (_chain_leaf(running, 0, "enabled"), _chain_leaf(running, 0, "rf-power-output")) == ("false", None)
        assert site.device.config.chains[0].rf_power_output_dbm == Decimal("33.0")

        # default-operation replace: the whole configuration is what the edit says
        m.edit_config(target="running", config=_config("<user-limit>8</user-limit>"), default_operation="replace")
        running = m.get_config("running")
        assert _leaf(running, "bts/user-limit") == "8" and _leaf(running, "bts/sleep") is None
        assert site.device.config.chains == ()

        # default-operation none: only explicit operations act
        m.edit_config(
            target="running",
            config=_config('<user-limit>99</user-limit><sleep nc:operation="merge">false</sleep>'),
            default_operation="none",
        )
        running = m.get_config("running")
        assert (_leaf(running, "bts/user-limit"), _leaf(running, "bts/sleep")) == ("8", "false")


@pytest.mark.parametrize(
    ("body", "tag", "path"),
    [
        ("<duty-cycle>150</duty-cycle>", "invalid-value", "/bts:bts/bts:duty-cycle"),
        ("<duty-cycle-period>10</duty-cycle-period>", "invalid-value", "/bts:bts/bts:duty-cycle-period"),
        (
            "<transceiver-chain><id>1</id><rf-power-output>47</rf-power-output></transceiver-chain>",
            "invalid-value",
            "/bts:bts/bts:transceiver-chain[bts:id='1']/bts:rf-power-output",
        ),
        (
            "<transceiver-chain><id>1</id><rf-power-output>30.5</rf-power-output></transceiver-chain>",
            "invalid-value",
            "/bts:bts/bts:transceiver-chain[bts:id='1']/bts:rf-power-output",
        ),
        ("<channel-bandwidth>2.5</channel-bandwidth>", "invalid-value", "/bts:bts/bts:channel-bandwidth"),
        ("<emergency-calls-only>maybe</emergency-calls-only>", "invalid-value", "/bts:bts/bts:emergency-calls-only"),
        ("<warp-drive>on</warp-drive>", "unknown-element", "/bts:bts"),
    ],
)
def test_invalid_edits_are_rejected_with_tag_and_path(site: Site, body: str, tag: str, path: str) -> None:
    with site.connect() as m:
        before = m.get_config("running").data_xml
        err = _rpc_error(lambda: m.edit_config(target="running", config=_config(f"<sleep>true</sleep>{body}")))
        assert (err.type, err.tag, err.path) == ("application", tag, path)
        assert err.message
        assert m.get_config("running").data_xml == before  # nothing of the edit was applied


def test_unsupported_operations_and_datastores(site: Site) -> None:
    with site.connect() as m:
        err = _rpc_error(lambda: m.get_config("candidate"))
        assert (err.type, err.tag) == ("protocol", "operation-not-supported")
        err = _rpc_error(lambda: m.dispatch(etree.fromstring(f'<commit xmlns="{NC}"/>')))
        assert (err.type, err.tag) == ("protocol", "operation-not-supported")
        err = _rpc_error(lambda: m.get(filter=("xpath", "/bts")))
        assert err.tag == "bad-attribute"


# ---------------------------------------------------------------------------------------- locks


def test_a_lock_keeps_other_sessions_out(site: Site) -> None:
    with site.connect() as a, site.connect() as b:
        a.lock("running")
        err = _rpc_error(lambda: b.edit_config(target="running", config=_config("<sleep>true</sleep>")))
        assert (err.tag, err.type) == ("in-use", "protocol")
        err = _rpc_error(lambda: b.lock("running"))
        assert err.tag == "lock-denied"
        assert f"<session-id>{a.session_id}</session-id>" in (err.info or "")
        err = _rpc_error(lambda: b.unlock("running"))
        assert err.tag == "operation-failed"
        a.edit_config(target="running", config=_config("<sleep>true</sleep>"))  # the holder may edit
        a.unlock("running")
        b.edit_config(target="running", config=_config("<sleep>false</sleep>"))
        b.lock("running")
    # b's session ended, which released its lock
    with site.connect() as c:
        c.lock("running")
        c.unlock("running")


def test_kill_session_ends_the_other_session_and_its_lock(site: Site) -> None:
    a = site.connect()  # not a context manager: its close-session would fail once it is killed
    with site.connect() as b:
        a.lock("running")
        b.kill_session(a.session_id)
        deadline = time.monotonic() + TIMEOUT
        while a.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not a.connected
        b.lock("running")
        err = _rpc_error(lambda: b.kill_session(b.session_id))
        assert err.tag == "invalid-value"


def test_close_session_and_authentication(site: Site, tmp_path: Path) -> None:
    m = site.connect()
    m.close_session()
    assert not m.connected
    with pytest.raises(AuthenticationError):
        site.connect(password="wrong")


def test_public_key_login(tmp_path: Path) -> None:
    key = paramiko.ECDSAKey.generate(bits=256)
    key_file = tmp_path / "id_ecdsa"
    key.write_private_key_file(str(key_file))
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(f"# the charger\n{key.get_name()} {key.get_base64()} charger@site\n")
    site = Site(tmp_path / "bts", authorized_keys={"charger": load_authorized_keys(authorized)})
    try:
        with site.connect(username="charger", password=None, key_filename=str(key_file)) as m:
            assert _leaf(m.get_config("running"), "bts/sleep") == "false"
        other = paramiko.ECDSAKey.generate(bits=256)
        other.write_private_key_file(str(tmp_path / "other"))
        with pytest.raises(AuthenticationError):
            site.connect(username="charger", password=None, key_filename=str(tmp_path / "other"))
    finally:
        site.server.close()


# ---------------------------------------------------------------------------- persistence, power


def test_running_configuration_and_host_key_survive_a_restart(site: Site) -> None:
    with site.connect() as m:
        key = m._session._transport.get_remote_server_key()
        m.edit_config(
            target="running", config=_config("<user-limit>12</user-limit><backhaul-enabled>false</backhaul-enabled>")
        )
    host_key = (site.data / HOST_KEY_FILE).read_bytes()
    site.restart()
    with site.connect() as m:
        running = m.get_config("running")
        assert (_leaf(running, "bts/user-limit"), _leaf(running, "bts/backhaul-enabled")) == ("12", "false")
        assert m._session._transport.get_remote_server_key() == key
    assert (site.data / HOST_KEY_FILE).read_bytes() == host_key
    assert not list(site.data.glob(".running-*"))  # no temporary file left behind


def test_power_draw_follows_the_configuration(site: Site) -> None:
    seen: list[float] = []
    site.device.on_power_change(seen.append)

    def state_watts(m: manager.Manager) -> float:
        reply = m.get(filter=("subtree", f'<bts xmlns="{BTS}"><state><power-draw-watts/></state></bts>'))
        return float(_leaf(reply, "bts/state/power-draw-watts") or "nan")

    with site.connect() as m:
        full = state_watts(m)
        assert 37 <= full <= 40
        m.edit_config(
            target="running",
            config=_config("<transceiver-chain><id>0</id><rf-power-output>27</rf-power-output></transceiver-chain>"),
        )
        lower = state_watts(m)
        assert lower < full - 3  # 2 W -> 0.5 W out saves 6 W of PA input
        m.edit_config(
            target="running",
            config=_config("<transceiver-chain><id>1</id><enabled>false</enabled></transceiver-chain>"),
        )
        one_chain = state_watts(m)
        assert one_chain < lower - 10
        m.edit_config(
            target="running",
            config=_config("<transceiver-chain><id>0</id><enabled>false</enabled></transceiver-chain>"),
        )
        reply = m.get(filter=("subtree", f'<bts xmlns="{BTS}"><state/></bts>'))
        assert _leaf(reply, "bts/state/on-air") == "false" and _leaf(reply, "bts/state/serving-users") == "0"
        assert state_watts(m) < one_chain
        assert seen == pytest.approx([lower, one_chain, state_watts(m)], abs=0.01)
        assert site.device.power_draw_watts == pytest.approx(seen[-1])
