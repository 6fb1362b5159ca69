"""With [server] tls_cert/tls_key the service speaks HTTPS, TLS 1.2 at the least (what F&O's endpoint requires)."""

import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from connector.app import server_ssl_context
from sandbox.tls import make_ca


async def test_https_with_tls12_minimum(tmp_path: Path, unused_tcp_port: int) -> None:
    ca = make_ca(tmp_path)
    server_ctx = server_ssl_context(ca.server_cert_path, ca.server_key_path)
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_2

    app = web.Application()
    app.router.add_get("/healthz", lambda r: web.json_response({"status": "ok"}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port, ssl_context=server_ctx).start()
    try:
        trusted = ssl.create_default_context(cafile=str(ca.cert_path))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{unused_tcp_port}/healthz", ssl=trusted) as r:
                assert r.status == 200
            # a client that insists on TLS 1.1 or older cannot connect
            old = ssl.create_default_context(cafile=str(ca.cert_path))
            old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"https://127.0.0.1:{unused_tcp_port}/healthz", ssl=old):
                    pass
            # and nobody connects without trusting the certificate
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"https://127.0.0.1:{unused_tcp_port}/healthz", ssl=ssl.create_default_context()):
                    pass
    finally:
        await runner.cleanup()
