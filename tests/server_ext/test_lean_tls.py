"""The lean single-user server skips loading the system's CA certificates only where no TLS
is used: its hub client's default context then trusts no one (fails closed), and a hub
reached over https keeps the full verified context."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, ssl
from claudehub.server_ext import singleuser
singleuser.prepare()
import aiohttp.connector as c
ctx = c._SSL_CONTEXT_VERIFIED
print(json.dumps({
    "cas": ctx.cert_store_stats()["x509_ca"],
    "verify": ctx.verify_mode == ssl.CERT_REQUIRED,
    "hostname": ctx.check_hostname,
    "default_restored": ssl.create_default_context is singleuser._REAL_DEFAULT_CONTEXT,
    "real_default_cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
}))
"""


def _probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_hub_over_http_the_default_context_still_verifies_and_trusts_no_one() -> None:
    seen = _probe(JUPYTERHUB_API_URL="http://127.0.0.1:8081/hub/api")
    assert seen["cas"] == 0
    assert seen["verify"] is True and seen["hostname"] is True
    # the patch was for aiohttp's import only: everyone else gets the system's CAs
    assert seen["default_restored"] is True
    assert isinstance(seen["real_default_cas"], int) and seen["real_default_cas"] > 0


def test_hub_over_https_or_internal_ssl_keeps_the_system_cas() -> None:
    https = _probe(JUPYTERHUB_API_URL="https://hub.example:8081/hub/api")
    internal = _probe(
        JUPYTERHUB_API_URL="http://127.0.0.1:8081/hub/api", JUPYTERHUB_SSL_CERTFILE="/x.pem"
    )
    for seen in (https, internal):
        assert isinstance(seen["cas"], int) and seen["cas"] > 0
        assert seen["verify"] is True
