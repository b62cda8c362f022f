"""Local mode stops cleanly on Ctrl-C, even with answers streaming.

JupyterHub stops its services one after another, each with SIGINT and then 10 s before it
kills it. The key proxy's drain is set to fit well inside that, so nothing has to be killed:
the time it takes is measured by benchmarks/stop/measure_stop.py (docs/performance.md).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

from claudehub.hub.local import LocalSettings, configure_local
from claudehub.proxy.app import KeyProxyApp
from tests.e2e.conftest import start_local_stack
from tests.fakes.upstream import FakeAnthropic
from tests.local.running import alive, descendants, log_in_and_start, sandbox_token, stream


def _local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: float) -> LocalSettings:
    monkeypatch.setenv("CLAUDEHUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLAUDEHUB_DEV_PASSWORD", raising=False)
    return LocalSettings(**kw)


def test_the_key_proxy_drains_inside_the_hubs_stop_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Config()
    configure_local(c, _local_settings(tmp_path, monkeypatch))
    (keyproxy,) = [s for s in c.JupyterHub.services if s["name"] == "keyproxy"]
    app = KeyProxyApp()
    app.parse_command_line(keyproxy["command"][3:])
    assert 0 < app.shutdown_timeout <= 8  # JupyterHub kills a service 10 s after SIGINT


def test_a_drain_longer_than_the_hub_waits_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TraitError, match="keyproxy_drain_seconds must be between 0 and 8"):
        _local_settings(tmp_path, monkeypatch, keyproxy_drain_seconds=30)


@pytest.mark.slow
def test_ctrl_c_stops_everything_without_a_kill(tmp_path: Path) -> None:
    upstream = FakeAnthropic(delay_between_events=2.0)  # an answer that lasts a minute
    upstream.start()
    stack = start_local_stack(tmp_path, upstream)
    try:
        log_in_and_start(stack.url, "streamer", stack.password)
        token = sandbox_token("streamer", descendants(stack.process.pid))
        streaming = threading.Event()
        threading.Thread(
            target=stream, args=(stack.keyproxy_url, token, streaming), daemon=True
        ).start()
        assert streaming.wait(30), "the answer did not start streaming"
        processes = descendants(stack.process.pid) | {stack.process.pid}
        assert len(processes) >= 4, "hub, proxy, key proxy and course service"
        stack.process.send_signal(signal.SIGINT)  # what Ctrl-C on `make run` sends
        status = stack.process.wait(60)
        deadline = time.monotonic() + 60  # a ceiling for a hang (the speed: benchmarks/stop)
        while any(alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in processes if alive(p)], "processes left after the hub exited"
        log = stack.log_text()
        assert status == 0, log[-3000:]
        # the key proxy finished its own stop (drain, usage flushed) before anyone killed it
        assert "[claudehub.proxy] Stopped" in log, log[-3000:]
    finally:
        if stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGKILL)
        upstream.stop()
