"""The key proxy's limits and model allowlist travel from the chart's values to its traits.

``keyproxy.limits`` (rate, burst, daily budget, extra models, max_tokens cap) and
``sandbox.models`` become the rendered key proxy's arguments; the arguments are parsed by the
real ``KeyProxyApp`` (so a value that renders into something the traits cannot read fails
here), and the rendered container, started as the chart would start it, refuses every model
outside the list before anything reaches the upstream.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from claudehub.contract.tokens import mint_token
from claudehub.hub.settings import SettingsError, validate
from claudehub.proxy.app import KeyProxyApp
from tests.fakes.upstream import FakeAnthropic
from tests.helm.charts import KEY_SECRET, Rendering, deep_merge, hub_files, render
from tests.helm.test_components_start import Container
from tests.helpers import free_port

LIMITS = {
    "rateLimitPerMinute": 0.5,
    "rateLimitBurst": 40,
    "dailyTokenBudget": 2500000,
    "models": ["claude-sonnet-4-5", "claude-opus-4-*"],
    "maxTokensCap": 4096,
    "maxTokensPolicy": "reject",
}


def _rendering(**values: Any) -> Rendering:
    return render(deep_merge(json.loads(json.dumps(KEY_SECRET)), values))


def _app_from(rendering: Rendering) -> KeyProxyApp:
    """The KeyProxyApp the rendered container's arguments configure (parsed, not run)."""
    args = rendering.one("Deployment", "claudehub-keyproxy")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args[0] == "claudehub-keyproxy"
    app = KeyProxyApp()
    app.config_file = ""
    app.initialize(args[1:])
    return app


def test_every_limit_reaches_its_trait() -> None:
    rendering = _rendering(
        sandbox={"models": ["claude-haiku-4-5", "claude-sonnet-4-5"]},
        keyproxy={"limits": LIMITS},
    )
    app = _app_from(rendering)
    assert app.rate_limit_per_minute == 0.5
    assert app.rate_limit_burst == 40
    assert app.daily_token_budget == 2_500_000  # not 2.5e+06: Helm's numbers are floats
    assert app.max_tokens_cap == 4096
    assert app.max_tokens_policy == "reject"
    # the models learners choose, then the extra ones, each once
    assert app.allowed_models == ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-*"]


def test_the_defaults_are_the_values_files() -> None:
    app = _app_from(_rendering())
    assert app.rate_limit_per_minute == 60
    assert app.rate_limit_burst == 0
    assert app.daily_token_budget == 0
    assert app.max_tokens_cap == 0
    assert app.max_tokens_policy == "clamp"
    assert app.allowed_models == []


@pytest.mark.parametrize(
    "models",
    [["*"], ["Claude-Opus-4-1"], ["claude-haiku-4-5 "], [""], ["x" * 200]],
    ids=["star", "upper-case", "trailing-space", "empty", "huge"],
)
def test_a_bad_model_entry_is_refused_by_the_schema(models: list[str]) -> None:
    with pytest.raises(Exception, match="models"):
        _rendering(keyproxy={"limits": {"models": models}})
    with pytest.raises(Exception, match="models"):
        _rendering(sandbox={"models": models})


def test_a_pattern_is_no_model_a_learner_can_choose() -> None:
    with pytest.raises(Exception, match="models"):
        _rendering(sandbox={"models": ["claude-haiku-*"]})


def test_a_pattern_allowing_every_model_stops_the_key_proxy_with_one_line(
    tmp_path: Path,
) -> None:
    """``claude-*`` passes the schema (it starts with claude-) but not the key proxy."""
    rendering = _rendering(keyproxy={"limits": {"models": ["claude-*"]}})
    container = Container(rendering, "claudehub-keyproxy", tmp_path / "kp", free_port())
    proc = container.run(tmp_path, f"http://127.0.0.1:{free_port()}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    lines = [line for line in err.decode().splitlines() if "claude-*" in line]
    assert len(lines) == 1 and "would allow every model" in lines[0], err.decode()[-2000:]


#: A learner's attempts to reach a model the operator did not allow (issue 24's walk).
LEAKS = {
    "opus": {"model": "claude-opus-4-1"},
    "another-family": {"model": "claude-sonnet-4-5"},
    "upper-case": {"model": "CLAUDE-HAIKU-4-5"},
    "trailing-space": {"model": "claude-haiku-4-5 "},
}


def _post(url: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    payload = {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        **body,
    }
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_rendered_key_proxy_refuses_every_model_but_the_allowed_one(tmp_path: Path) -> None:
    with FakeAnthropic() as upstream:
        rendering = _rendering(
            sandbox={"models": ["claude-haiku-4-5"]},
            keyproxy={"upstream": {"url": upstream.url}},
        )
        container = Container(rendering, "claudehub-keyproxy", tmp_path / "kp", free_port())
        # No hub runs here: the rendered arguments, standalone (tokens by signature alone).
        container.main["args"] = [*container.main["args"], "--standalone"]
        proc = container.run(tmp_path, f"http://127.0.0.1:{free_port()}")
        try:
            _wait_until_ready(container, proc)
            secret = Path(container.env["CLAUDEHUB_TOKEN_SECRET_FILE"]).read_bytes().strip()
            token = mint_token(secret, "learner", "", ttl=600)
            base = f"http://127.0.0.1:{container.port}"
            for name, body in LEAKS.items():
                status, data = _post(f"{base}/v1/messages", {"x-api-key": token}, body)
                assert status in (400, 403), (name, status, data)
                assert data["type"] == "error", name
                assert "claude-haiku-4-5" in data["error"]["message"] or status == 400, name
            # the same through a Bearer header, and with the model in the query string
            status, _ = _post(
                f"{base}/v1/messages",
                {"authorization": f"Bearer {token}"},
                {"model": "claude-opus-4-1"},
            )
            assert status == 403
            status, data = _post(
                f"{base}/v1/messages?model=claude-opus-4-1",
                {"x-api-key": token},
                {"model": "claude-haiku-4-5"},
            )
            assert status == 400 and "query" in data["error"]["message"]
            assert upstream.message_requests() == [], "a refused model reached the upstream"
            # the allowed model, and its dated snapshot, go through
            for model in ("claude-haiku-4-5", "claude-haiku-4-5-20251001"):
                status, _ = _post(f"{base}/v1/messages", {"x-api-key": token}, {"model": model})
                assert status == 200, model
            assert [r.body["model"] for r in upstream.message_requests()] == [
                "claude-haiku-4-5",
                "claude-haiku-4-5-20251001",
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _wait_until_ready(container: Container, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if container.probe("readinessProbe") == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"the key proxy exited: {err[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the rendered key proxy never became ready")
        time.sleep(0.2)


def test_a_class_list_allowing_every_model_stops_the_hub_with_one_line() -> None:
    values = deep_merge(
        json.loads(json.dumps(KEY_SECRET)),
        {"classes": {"physics": {"limits": {"allowedModels": ["claude-haiku-4-5", "claude-*"]}}}},
    )
    settings, schema = hub_files(render(values))
    with pytest.raises(SettingsError) as err:
        validate(settings, schema)
    assert "classes.physics.limits.allowedModels" in str(err.value)
    assert "would allow every model" in str(err.value) and "\n" not in str(err.value)


def test_author_sessions_limits_reach_their_trait() -> None:
    """keyproxy.limits.authors (docs/authoring.md) becomes KeyProxyApp.author_limits, only the
    fields given (the others stay the learners' defaults); absent, no argument at all."""
    authors = {"dailyTokenBudget": 3000000, "rateLimitPerMinute": 12, "models": ["claude-opus-4-*"]}
    app = _app_from(_rendering(keyproxy={"limits": {"authors": authors}}))
    assert app.author_limits == {
        "daily_token_budget": 3_000_000,
        "rate_limit_per_minute": 12,
        "allowed_models": ["claude-opus-4-*"],
    }
    assert _app_from(_rendering()).author_limits == {}
    with pytest.raises(Exception, match="budget"):
        _rendering(keyproxy={"limits": {"authors": {"budget": 5}}})
