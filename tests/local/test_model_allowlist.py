"""Local mode's model allowlist (CLAUDEHUB_MODELS) is enforced at the key proxy.

The models learners may choose are the only ones the key proxy forwards for them: a learner's
own sandbox token, as Claude in the sandbox holds it, reaches no other model by any spelling,
header, endpoint or query string, against the whole local stack that ``make run`` starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anthropic
import pytest
import requests
from traitlets.config import Config

from claudehub.hub.local import LocalSettings, configure_local
from claudehub.proxy.app import KeyProxyApp
from tests.e2e.conftest import REAL_KEY, local_mode_env, start_local_stack, stop_local_stack
from tests.fakes.upstream import FakeAnthropic
from tests.helpers import PATIENCE
from tests.local.running import descendants, log_in_and_start, sandbox_token

REPO = Path(__file__).resolve().parents[2]
ALLOWED = "claude-haiku-4-5"

#: (what the walk tried, path, credential header, model in the body)
LEAKS = [
    ("opus", "/v1/messages?beta=true", "x-api-key", "claude-opus-4-1"),
    ("sonnet", "/v1/messages", "x-api-key", "claude-sonnet-4-5"),
    ("upper-case", "/v1/messages", "x-api-key", "CLAUDE-OPUS-4-1"),
    ("trailing-space", "/v1/messages", "x-api-key", "claude-haiku-4-5 "),
    ("bearer", "/v1/messages", "authorization", "claude-opus-4-1"),
    ("query", "/v1/messages?model=claude-opus-4-1", "x-api-key", ALLOWED),
    ("count-tokens", "/v1/messages/count_tokens", "x-api-key", "claude-opus-4-1"),
]


def test_claudehub_models_reach_the_key_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key proxy's command line, parsed by the real app, carries the learners' models."""
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CLAUDEHUB_MODELS", " claude-haiku-4-5, claude-sonnet-4-5 ,")
    c = Config()
    configure_local(c, LocalSettings())
    [keyproxy] = [s for s in c.JupyterHub.services if s["name"] == "keyproxy"]
    assert keyproxy["command"][1:3] == ["-m", "claudehub.proxy.app"]
    app = KeyProxyApp()
    app.config_file = ""
    app.initialize(keyproxy["command"][3:])
    assert app.allowed_models == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    assert c.LocalSandboxSpawner.allowed_models == ["claude-haiku-4-5", "claude-sonnet-4-5"]


@pytest.mark.parametrize(
    ("models", "says"),
    [
        ("claude-*", "would allow every model"),
        ("claude-haiku-*", "is a pattern"),
        ("Claude-Haiku-4-5", "is not a model id"),
        ("claude-haiku-4-5,claude haiku", "is not a model id"),
    ],
)
def test_a_bad_models_setting_stops_local_mode_with_one_line(
    tmp_path: Path, models: str, says: str
) -> None:
    env = local_mode_env(tmp_path, "http://127.0.0.1:9", "a-password-123", REAL_KEY)
    env["CLAUDEHUB_MODELS"] = models
    proc = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "hub_config" / "local_config.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "CLAUDEHUB_MODELS" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("claudehub: cannot start local mode: ") and says in lines[0]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_a_learners_token_reaches_no_other_model(tmp_path: Path) -> None:
    with FakeAnthropic() as upstream:
        stack = start_local_stack(tmp_path, upstream, {"CLAUDEHUB_MODELS": ALLOWED})
        try:
            log_in_and_start(stack.url, "lena", stack.password)
            token = sandbox_token("lena", descendants(stack.process.pid))
            refused = []
            for name, path, header, model in LEAKS:
                auth = f"Bearer {token}" if header == "authorization" else token
                r = requests.post(
                    stack.keyproxy_url + path,
                    json={
                        "model": model,
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                    headers={header: auth, "anthropic-version": "2023-06-01"},
                    timeout=PATIENCE,
                )
                assert r.status_code in (400, 403), (name, r.status_code, r.text)
                assert r.json()["type"] == "error", name
                refused.append(name)
            client = anthropic.Anthropic(base_url=stack.keyproxy_url, api_key=token, max_retries=0)
            with pytest.raises(anthropic.PermissionDeniedError, match=ALLOWED):
                client.messages.create(
                    model="claude-opus-4-1",
                    max_tokens=16,
                    messages=[{"role": "user", "content": "hi"}],
                )
            assert upstream.requests == [], "a refused request reached the upstream"
            # the model the learner may use goes through, with the real key
            reply = client.messages.create(
                model=ALLOWED, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.content
            assert [(r.body or {}).get("model") for r in upstream.message_requests()] == [ALLOWED]
            assert upstream.keys_seen() == {REAL_KEY}
            assert refused == [x[0] for x in LEAKS]
        except BaseException:
            print(stack.log_text()[-4000:])
            raise
        finally:
            stop_local_stack(stack)
