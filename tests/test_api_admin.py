"""REST API: bearer-token authentication, health and OpenAPI, PSK and bootstrap administration, and
the token file (spmp.api.token)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Any

import httpx
import pytest

from _server_helpers import make_server
from spmp.api import create_app
from spmp.api.token import ENV_VAR, TOKEN_FILE, TokenError, load_or_create_token
from spmp.server import ManagementServer
from spmp.store import SecurityScope, SqliteStore, Store

TOKEN = "admin-token-0123456789abcdef"


@asynccontextmanager
async def api(tmp_path: FilePath) -> AsyncIterator[tuple[httpx.AsyncClient, ManagementServer, Store]]:
    async with SqliteStore(str(tmp_path / "spmp.db")) as store:
        server = make_server(store)
        await server.start()
        try:
            transport = httpx.ASGITransport(app=create_app(server, store, TOKEN))
            async with httpx.AsyncClient(transport=transport, base_url="http://spmp") as http:
                yield http, server, store
        finally:
            await server.stop()


def run(
    tmp_path: FilePath, test: Callable[[httpx.AsyncClient, ManagementServer, Store], Coroutine[Any, Any, None]]
) -> None:
    async def main() -> None:
        async with api(tmp_path) as (http, server, store):
            await test(http, server, store)

    asyncio.run(asyncio.wait_for(main(), 60))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ------------------------------------------------------------------------------------------ auth


def test_authentication(tmp_path: FilePath, caplog: pytest.LogCaptureFixture) -> None:
    async def body(http: httpx.AsyncClient, server: ManagementServer, store: Store) -> None:
        caplog.set_level(logging.DEBUG)
        missing = await http.get("/api/clients")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"] == "unauthorized"
        wrong = await http.get("/api/clients", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        basic = await http.get("/api/clients", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        assert (await http.get("/api/clients", headers=AUTH)).json() == []
        lower = await http.get("/api/clients", headers={"authorization": f"bearer {TOKEN}"})
        assert lower.status_code == 200
        await store.put_api_token("ops-script", "stored-token-abcdefghijklmnop")
        stored = await http.get("/api/clients", headers={"Authorization": "Bearer stored-token-abcdefghijklmnop"})
        assert stored.status_code == 200
        # Every route but health is guarded, including the unknown ones (no route discovery without a token).
        for method, url in [
            ("GET", "/api/openapi.json"),
            ("GET", "/api/events"),
            ("PUT", "/api/security/x"),
            ("GET", "/x"),
        ]:
            assert (await http.request(method, url)).status_code == 401, url
        assert "not-the-token" not in caplog.text and TOKEN not in caplog.text

    run(tmp_path, body)


def test_health_is_public_and_openapi_describes_every_route(tmp_path: FilePath) -> None:
    async def body(http: httpx.AsyncClient, server: ManagementServer, store: Store) -> None:
        health = await http.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["clients"] == 0
        document = (await http.get("/api/openapi.json", headers=AUTH)).json()
        assert document["openapi"].startswith("3.")
        paths = document["paths"]
        for route in [
            "/api/clients",
            "/api/clients/{endpoint}",
            "/api/clients/{endpoint}/{path}",
            "/api/clients/{endpoint}/{path}/observe",
            "/api/clients/{endpoint}/{path}/attributes",
            "/api/clients/{endpoint}/{path}/discover",
            "/api/clients/{endpoint}/composite/read",
            "/api/clients/{endpoint}/composite/write",
            "/api/clients/{endpoint}/telemetry",
            "/api/events",
            "/api/security/{endpoint}",
            "/api/bootstrap/{endpoint}",
            "/api/health",
        ]:
            assert route in paths, route
        assert set(paths["/api/clients/{endpoint}/{path}"]) == {"get", "put", "post", "delete"}

    run(tmp_path, body)


# ------------------------------------------------------------------------------------------ security


def test_security_keys_are_write_only(tmp_path: FilePath) -> None:
    async def body(http: httpx.AsyncClient, server: ManagementServer, store: Store) -> None:
        key = "00112233445566778899aabbccddeeff"
        put = await http.put("/api/security/dev1", json={"identity": "dev1-id", "key": key}, headers=AUTH)
        assert put.status_code == 200 and put.json() == {
            "endpoint": "dev1",
            "scope": "server",
            "identity": "dev1-id",
            "hasKey": True,
        }
        got = await http.get("/api/security/dev1", headers=AUTH)
        assert got.json()["identity"] == "dev1-id" and key not in got.text
        assert key not in (await http.get("/api/security", headers=AUTH)).text
        # The server's PSK cache learns the key at once (a DTLS handshake could use it now).
        assert server.psk_cache is not None and server.psk_cache.lookup("dev1-id") == bytes.fromhex(key)
        stored = await store.get_security("dev1")
        assert stored is not None and stored.psk_key == bytes.fromhex(key)
        clash = await http.put("/api/security/dev2", json={"identity": "dev1-id", "key": key}, headers=AUTH)
        assert clash.status_code == 409 and clash.json()["error"] == "conflict"
        bs = await http.put("/api/security/dev1?scope=bootstrap", json={"identity": "bs", "key": "0102"}, headers=AUTH)
        assert bs.status_code == 200 and bs.json()["scope"] == "bootstrap"
        assert (await store.get_security("dev1", SecurityScope.BOOTSTRAP)) is not None
        for bad in [{"identity": "x"}, {"identity": "x", "key": "zz"}, {"identity": "", "key": "01"}, {"key": "01"}]:
            assert (await http.put("/api/security/dev3", json=bad, headers=AUTH)).status_code == 400, bad
        assert (await http.put("/api/security/dev3?scope=x", json={}, headers=AUTH)).status_code == 400
        assert (await http.delete("/api/security/dev1", headers=AUTH)).status_code == 200
        assert server.psk_cache.lookup("dev1-id") is None
        assert (await http.get("/api/security/dev1", headers=AUTH)).status_code == 404
        assert (await http.delete("/api/security/dev1", headers=AUTH)).status_code == 404

    run(tmp_path, body)


# ------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_config(tmp_path: FilePath) -> None:
    async def body(http: httpx.AsyncClient, server: ManagementServer, store: Store) -> None:
        config = {
            "servers": [
                {
                    "shortServerId": 1,
                    "uri": "coaps://spmp.example:5684",
                    "securityMode": "PSK",
                    "pskIdentity": "dev1",
                    "pskKey": "000102030405060708090a0b0c0d0e0f",
                    "lifetime": 300,
                }
            ],
            "writes": [{"path": "/3/0/14", "value": "+03:00"}, {"path": "/3/0/13", "value": "2024-05-01T00:00:00Z"}],
        }
        put = await http.put("/api/bootstrap/dev1", json=config, headers=AUTH)
        assert put.status_code == 200, put.text
        got = (await http.get("/api/bootstrap/dev1", headers=AUTH)).json()
        assert got["endpoint"] == "dev1" and got["deleteExisting"] is True
        account = got["servers"][0]
        assert account["securityMode"] == "PSK" and account["hasPskKey"] is True and "pskKey" not in account
        assert "000102030405" not in (await http.get("/api/bootstrap", headers=AUTH)).text
        assert got["writes"] == [
            {"path": "/3/0/14", "type": "String", "value": "+03:00"},
            {"path": "/3/0/13", "type": "Time", "value": 1714521600},
        ]
        stored = await store.get_bootstrap_config("dev1")
        assert stored is not None and stored.servers[0].psk_key == bytes(range(16))
        default = {"servers": [{"shortServerId": 1, "uri": "coap://spmp.example"}]}
        assert (await http.put("/api/bootstrap/*", json=default, headers=AUTH)).status_code == 200
        assert (await http.get("/api/bootstrap/other", headers=AUTH)).json()["endpoint"] == "*"
        bad_configs: list[dict[str, Any]] = [
            {"servers": [{"shortServerId": 0, "uri": "coap://x"}]},
            {"servers": [{"shortServerId": 1}]},
            {"servers": [{"shortServerId": 1, "uri": "coap://x", "securityMode": "PSK", "pskIdentity": "a"}]},
            {"servers": [{"shortServerId": 1, "uri": "coap://x", "securityMode": "KERBEROS"}]},
            {"writes": [{"path": "/3/0/14", "value": 3}]},
            {"writes": [{"path": "/9999/0/1", "value": 3}]},
            {"writes": [{"path": "/3/0", "value": 3}]},
            {"deleteExisting": "yes"},
        ]
        for bad in bad_configs:
            answer = await http.put("/api/bootstrap/dev2", json=bad, headers=AUTH)
            assert answer.status_code == 400, (bad, answer.text)
        assert (await http.delete("/api/bootstrap/dev1", headers=AUTH)).status_code == 200
        assert (await http.delete("/api/bootstrap/dev1", headers=AUTH)).status_code == 404
        await store.delete_bootstrap_config("*")
        assert (await http.get("/api/bootstrap/dev1", headers=AUTH)).status_code == 404

    run(tmp_path, body)


# ------------------------------------------------------------------------------------------ token file


def test_token_is_created_once_with_mode_0600(tmp_path: FilePath, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    data_dir = tmp_path / "data"
    token, created = load_or_create_token(data_dir)
    assert created and len(token) >= 40
    path = data_dir / TOKEN_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(data_dir) == (token, False)


def test_token_precedence_and_checks(tmp_path: FilePath, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "from-the-environment-123")
    assert load_or_create_token(tmp_path) == ("from-the-environment-123", False)
    assert load_or_create_token(tmp_path, "explicit-token-abcdefgh") == ("explicit-token-abcdefgh", False)
    assert not (tmp_path / TOKEN_FILE).exists()
    with pytest.raises(TokenError, match="shorter than 16"):
        load_or_create_token(tmp_path, "short")
    with pytest.raises(TokenError, match="spaces"):
        load_or_create_token(tmp_path, "has a space in the middle")
    monkeypatch.delenv(ENV_VAR)
    (tmp_path / TOKEN_FILE).write_text("tiny\n")
    with pytest.raises(TokenError, match=TOKEN_FILE):
        load_or_create_token(tmp_path)
