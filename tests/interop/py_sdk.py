"""The official Python SDK client (`mcp` on PyPI) against the release servers.

The SDK's own OAuthClientProvider (an httpx2 auth flow) reads the 401 challenge, discovers the
protected resource and authorization server metadata, registers the client dynamically, and
builds the authorization URL with PKCE (S256). Its redirect handler hands that URL to the same
real headless Chromium as the TypeScript checks (`node browser.mjs`, which signs in, approves
and prints the callback URL); its callback handler returns the code, state and RFC 9207 `iss`,
which the SDK checks before redeeming the code. Then tools/list, tools/call greet and whoami, as
alice (the SDK's default `auto` mode, which probes the 2026-07-28 `server/discover` and falls back
to the initialize handshake; the session must speak 2026-07-28) and as bob (`legacy` mode: the
2025-11-25 initialize handshake).

Then machine clients (the client-credentials extension, SEP-1046), with the SDK's own providers
and no browser: `ClientCredentialsOAuthProvider` with a registered client's secret
(client_secret_basic), and `PrivateKeyJWTOAuthProvider` with assertions the SDK signs (RS256,
audience: the issuer) by a key whose public half the client registered as `jwks`. Each calls
whoami and must be itself (`sub` is `client:` and its client id).

Environment: MCP_URL, NODE (the node binary for browser.mjs). Prints `PASS name` /
`FAIL name: reason` lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

MCP_URL = os.environ.get("MCP_URL", "http://localhost:8990/mcp")
NODE = os.environ.get("NODE", "node")
BROWSER = str(Path(__file__).with_name("browser.mjs"))
PASSWORDS = {"alice": "password123", "bob": "hunter2"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def report(name: str, error: str | None) -> None:
    if error is None:
        print(f"PASS {name}", flush=True)
    else:
        reason = " ".join(error.split())[:400]
        print(f"FAIL {name}: {reason}", flush=True)


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class BrowserUser:
    """The user agent: the browser signs `username` in and approves; the callback comes back."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.authorization_urls: list[str] = []
        self.callback: str | None = None

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        proc = await asyncio.create_subprocess_exec(
            NODE,
            BROWSER,
            "--username",
            self.username,
            "--password",
            PASSWORDS[self.username],
            authorization_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        log(err.decode(errors="replace").strip())
        if proc.returncode != 0:
            raise RuntimeError(f"the browser failed: {err.decode(errors='replace').strip()}")
        self.callback = out.decode().strip().splitlines()[-1]

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.callback is None:
            raise RuntimeError("no callback reached")
        query = parse_qs(urlparse(self.callback).query)
        self.callback = None
        if "error" in query:
            raise RuntimeError(f"authorization error {query['error'][0]}")
        return AuthorizationCodeResult(
            code=query["code"][0],
            state=query.get("state", [None])[0],
            iss=query.get("iss", [None])[0],
        )


def free_port() -> int:
    """A loopback port nobody listens on now, for the redirect URI (the browser listens there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool_text(result: object) -> str:
    return "".join(getattr(c, "text", "") for c in getattr(result, "content", []))


async def user_flow(username: str, mode: str, revision: str) -> None:
    prefix = f"py-sdk {username} ({revision}, {mode} mode)"
    user = BrowserUser(username)
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=MCP_URL,
        client_metadata=OAuthClientMetadata(
            client_name="Python SDK client",
            redirect_uris=[f"http://127.0.0.1:{free_port()}/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=user.redirect_handler,
        callback_handler=user.callback_handler,
    )
    names = [
        f"{prefix} OAuthClientProvider flow with registration, PKCE, browser login and consent",
        f"{prefix} tools/list",
        f"{prefix} tools/call greet",
        f"{prefix} tools/call whoami names {username}",
    ]
    results: dict[str, str | None] = {}

    async def steps(client: Client) -> None:
        if client.protocol_version != revision:
            raise AssertionError(f"the client speaks {client.protocol_version}, expected {revision}")
        url = urlparse(user.authorization_urls[0]) if user.authorization_urls else None
        query = parse_qs(url.query) if url else {}
        if not url:
            raise AssertionError("the SDK never sent the user to the authorization server")
        if query.get("code_challenge_method") != ["S256"]:
            raise AssertionError("no PKCE S256 challenge")
        if storage.client_info is None or storage.tokens is None:
            raise AssertionError("no registered client or no token")
        results[names[0]] = None

        tools = [t.name for t in (await client.list_tools()).tools]
        if "greet" not in tools or "whoami" not in tools:
            raise AssertionError(f"tools/list answered {tools}")
        results[names[1]] = None

        text = tool_text(await client.call_tool("greet", {"name": username}))
        if f"Hello, {username}!" not in text:
            raise AssertionError(f"greet answered {text!r}")
        results[names[2]] = None

        text = tool_text(await client.call_tool("whoami", {}))
        who = json.loads(text)
        if who.get("sub") != username:
            raise AssertionError(f"whoami answered {text}")
        if who.get("client_id") != storage.client_info.client_id:
            raise AssertionError(f"whoami client_id {who.get('client_id')}")
        results[names[3]] = None

    error: str | None = None
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
            async with Client(streamable_http_client(MCP_URL, http_client=http), mode=mode) as client:
                await asyncio.wait_for(steps(client), timeout=120)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a FAIL line
        error = describe(exc)
    broken = False
    for name in names:
        if name in results:
            report(name, None)
        elif not broken:
            report(name, error or "did not run")
            broken = True
        else:
            report(name, "not reached: an earlier step failed")


def describe(exc: BaseException) -> str:
    """The innermost messages of an exception (task groups wrap them)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def authorization_server() -> str:
    """The issuer the MCP endpoint names in its protected resource metadata."""
    origin = MCP_URL.split("/mcp")[0]
    async with httpx2.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{origin}/.well-known/oauth-protected-resource/mcp")
        answer.raise_for_status()
        return str(answer.json()["authorization_servers"][0])


async def register_machine(issuer: str, metadata: dict) -> dict:
    """Registers a machine client (no redirect URIs) and returns the registration answer."""
    body = {"grant_types": ["client_credentials"], "scope": "mcp.read", **metadata}
    async with httpx2.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{issuer}/register", json=body)
        if answer.status_code != 201:
            raise AssertionError(f"registration answered {answer.status_code}: {answer.text}")
        return answer.json()


def rsa_key_pair() -> tuple[str, dict]:
    """A fresh RSA key: its private PEM for the SDK, and its public JWK to register."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    numbers = key.public_key().public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return pem, {"kty": "RSA", "alg": "RS256", "use": "sig", "n": b64(numbers.n), "e": b64(numbers.e)}


async def machine_flow(method: str) -> None:
    name = f"py-sdk machine client ({method}) gets a token by client_credentials and calls whoami as itself"
    try:
        issuer = await authorization_server()
        if method == "client_secret_basic":
            client = await register_machine(issuer, {"token_endpoint_auth_method": method})
            provider: OAuthClientProvider = ClientCredentialsOAuthProvider(
                server_url=MCP_URL,
                storage=MemoryStorage(),
                client_id=client["client_id"],
                client_secret=client["client_secret"],
                scope="mcp.read",
            )
        else:
            pem, jwk = rsa_key_pair()
            client = await register_machine(issuer, {"token_endpoint_auth_method": method, "jwks": {"keys": [jwk]}})
            client_id = client["client_id"]
            signer = SignedJWTParameters(issuer=client_id, subject=client_id, signing_key=pem)
            provider = PrivateKeyJWTOAuthProvider(
                server_url=MCP_URL,
                storage=MemoryStorage(),
                client_id=client_id,
                assertion_provider=signer.create_assertion_provider(),
                scope="mcp.read",
            )

        async def steps(session: Client) -> None:
            who = json.loads(tool_text(await session.call_tool("whoami", {})))
            if who.get("sub") != f"client:{client['client_id']}" or who.get("scopes") != ["mcp.read"]:
                raise AssertionError(f"whoami answered {who}")

        async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
            async with Client(streamable_http_client(MCP_URL, http_client=http)) as session:
                await asyncio.wait_for(steps(session), timeout=60)
        report(name, None)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a FAIL line
        report(name, describe(exc))


async def main() -> None:
    await user_flow("alice", "auto", "2026-07-28")
    await user_flow("bob", "legacy", "2025-11-25")
    await machine_flow("client_secret_basic")
    await machine_flow("private_key_jwt")


if __name__ == "__main__":
    asyncio.run(main())
