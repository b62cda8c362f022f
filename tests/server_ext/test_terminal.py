"""The Claude terminal through its websocket: echo, reattach, exit/restart, flow control,
Ctrl-C, activity. The terminal runs bash here (the product runs the launcher)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import datetime
from typing import Any

import pytest

from tests.helpers import PATIENCE, eventually

# no pytest.mark.asyncio: pytest-jupyter runs these coroutines on the server's own loop


async def test_keystrokes_echo_through_the_websocket(open_term: Any) -> None:
    term = await open_term()
    await term.type("echo hello-$((6*7))\r")
    await term.expect("hello-42")


async def test_reload_reattaches_to_the_same_process_with_output_replayed(
    open_term: Any, jp_fetch: Any
) -> None:
    first = await open_term()
    pid = first.setup["pid"]
    await first.type("echo before-$((1+1))\r")
    await first.expect("before-2")
    first.close()

    second = await open_term()  # a reload: a new websocket
    out = await second.expect("before-2")
    assert "before-2" in out
    await second.type("echo $$\r")
    state = json.loads((await jp_fetch("claude", "api", "session")).body)
    assert state["alive"] is True
    await second.expect(f"{state['pid']}\r\n")
    assert second.setup["pid"] == pid == state["pid"]

    third = await open_term()  # a second tab, at the same time: both see the output
    await third.type("echo both-$((2+3))\r")
    await second.expect("both-5")
    await third.expect("both-5")


async def test_exit_is_reported_and_restart_starts_a_new_process(open_term: Any) -> None:
    term = await open_term()
    await term.type("echo $$\r")
    await term.expect("$ ")
    await term.type("exit 3\r")
    ev = await term.event("exit")
    assert ev[1] == {"status": 3, "signal": None}

    late = await open_term()  # a tab opened after the exit is told too
    assert (await late.event("exit"))[1]["status"] == 3

    await term.send("restart")
    started = await term.event("started")
    assert (await late.event("started"))[1] == started[1]
    await term.type("echo again-$((4+4))\r")
    await late.expect("again-8")


async def test_pause_stops_output_and_resume_continues(open_term: Any) -> None:
    term = await open_term()
    await term.type("stty -echo; echo ready-$((1+2))\r")
    await term.expect("ready-3")
    # the prompt after it too: nothing the shell wrote before the pause is still on its way
    async with asyncio.timeout(PATIENCE):
        while "$ " not in term.output.split("ready-3", 1)[1]:
            await term.next()
    await term.send("pause")
    await term.type("for i in $(seq 1 5); do echo line-$i; done; echo end-$((5+5))\r")
    # nothing arrives while paused (give the shell plenty of time to run the loop)
    with pytest.raises(TimeoutError):
        await term.next(wait=1.0)
    assert "end-10" not in term.output
    await term.send("resume")
    await term.expect("end-10")
    assert "line-5" in term.output


async def test_flood_then_ctrl_c_returns_quickly_with_flow_control(open_term: Any) -> None:
    """`yes` floods; the client pauses as the page does; Ctrl-C gets a prompt back. (How fast:
    benchmarks/terminal, "flood: Ctrl-C -> prompt"; a test on a shared machine only checks
    that it does.)"""
    term = await open_term()
    await term.type("yes 0123456789abcdef0123456789abcdef\r")
    received = 0
    # a real flood: 300 kB of output arrive (however long that takes on this machine)
    async with asyncio.timeout(PATIENCE):
        while received <= 300_000:
            msg = await term.next()
            if msg[0] == "stdout":
                received += len(msg[1])
                term.output = term.output[-200:]
    await term.send("pause")  # a slow browser: the pty is no longer read
    # drain what was in flight, then nothing more comes while paused
    drained = 0
    with pytest.raises(TimeoutError):
        while True:
            msg = await term.next(wait=0.5)
            drained += len(msg[1]) if msg[0] == "stdout" else 0
            term.output = term.output[-200:]
    # what was in flight when the pause arrived (socket buffers); the send window test below
    # shows how acknowledging clients bound it
    assert drained < 8_000_000
    await term.type("\x03")
    await term.send("resume")
    await term.type("echo int-$((3*3))\r")
    # Ctrl-C reached `yes` (or the flood would go on and the echo never run): a prompt again
    await term.expect("int-9")


def _sleeping_child(shell: int) -> bool:
    """Whether the shell ``shell`` has a ``sleep`` child running (so Ctrl-C has one to stop)."""
    for task in os.listdir(f"/proc/{shell}/task"):
        try:
            with open(f"/proc/{shell}/task/{task}/children") as f:
                children = f.read().split()
        except FileNotFoundError:
            continue
        for child in children:
            try:
                with open(f"/proc/{child}/comm") as f:
                    if f.read().strip() == "sleep":
                        return True
            except FileNotFoundError:
                continue
    return False


async def test_ctrl_c_works_when_the_server_ignores_sigint(open_term: Any) -> None:
    """A server started in the background inherits SIGINT ignored; its terminal must not."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        term = await open_term()
        # ``trap -p INT`` prints nothing when SIGINT is not ignored; then the shell sleeps
        await term.type("trap -p INT; sleep 600; echo after-$((7+1))\r")
        await eventually(lambda: _sleeping_child(term.setup["pid"]), what="the shell's sleep")
        await term.type("\x03")
        await term.type("echo int-$((2+2))\r")
        # the sleep was interrupted: the next command runs long before the 600 s are over
        # (which the wait below could not outlast), and the rest of the line never does
        await term.expect("int-4")
        assert "after-8" not in term.output  # the whole command line was interrupted
    finally:
        signal.signal(signal.SIGINT, old)


async def test_resize_follows_the_window(open_term: Any) -> None:
    term = await open_term()
    await term.send("set_size", 33, 111, 0, 0)
    await term.type("stty size\r")
    await term.expect("33 111")


async def _last_activity(jp_fetch: Any) -> datetime:
    status = json.loads((await jp_fetch("api", "status")).body)
    return datetime.fromisoformat(status["last_activity"].replace("Z", "+00:00"))


async def test_terminal_output_alone_counts_as_activity(open_term: Any, jp_fetch: Any) -> None:
    term = await open_term()
    await term.type("stty -echo; while sleep 0.3; do echo tick; done\r")
    await term.expect("tick")
    # the input and its echo are behind us: from here on the terminal only writes output
    after_input = await _last_activity(jp_fetch)

    async def moved_on() -> bool:
        return await _last_activity(jp_fetch) > after_input

    # the ticks alone move the server's last activity on (reported at most every
    # activity_interval, so this waits for the condition, not for a time)
    await eventually(moved_on, what="last_activity after output alone")


async def test_the_terminal_process_does_not_get_the_hub_token(
    open_term: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret-hub-token")
    term = await open_term()
    await term.type("echo token=[${JUPYTERHUB_API_TOKEN}] term=$TERM\r")
    out = await term.expect("term=xterm-256color")
    assert "token=[]" in out


@pytest.mark.parametrize("claude_command", [["/nonexistent/claude"]])
async def test_a_command_that_cannot_start_is_reported(open_term: Any) -> None:
    term = await open_term()
    ev = await term.event("exit")
    assert ev[1]["status"] == 127
    await term.expect("could not start")


async def test_send_window_holds_output_until_the_client_has_drawn_it(open_term: Any) -> None:
    """A client that acknowledges what it draws never has more than the window (in bytes of
    UTF-8: the flood is two-byte characters) in flight, whatever the socket buffers between
    them could hold."""
    term = await open_term()
    await term.send("ack", 0)
    await term.type("stty -echo; yes ééééééééééééééééééééé | head -c 4000000; echo fin-$((1+1))\r")

    async def drain(wait: float) -> None:
        with pytest.raises(TimeoutError):
            while True:
                await term.next(wait=wait)
                term.output = term.output[-100:]

    window = 512 * 1024
    # no acks: the output arrives up to the window (however long that takes here) ...
    async with asyncio.timeout(PATIENCE):
        while term.received <= window // 2:
            await term.next()
            term.output = term.output[-100:]
    await drain(1.0)  # ... and stops there
    assert term.received <= window + 300_000
    async with asyncio.timeout(PATIENCE):
        while "fin-2" not in term.output:  # now draw (ack) everything as it arrives
            await term.send("ack", term.received)
            await term.next()
            term.output = term.output[-100:]
    assert term.received >= 4_000_000


async def test_a_client_without_the_binary_subprotocol_gets_terminado_json(
    jp_ws_fetch: Any,
) -> None:
    """terminado-protocol clients (the shared benchmark harness) still get ["stdout", text]."""
    ws = await jp_ws_fetch("claude", "terminal")
    assert ws.selected_subprotocol is None
    await ws.write_message(json.dumps(["stdin", "echo é-$((2+3))\r"]))
    seen = ""
    async with asyncio.timeout(PATIENCE):
        while "é-5" not in seen:
            raw = await ws.read_message()
            assert isinstance(raw, str), "binary frame sent to a terminado client"
            msg = json.loads(raw)
            if msg[0] == "stdout":
                seen += msg[1]
    ws.close()


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], request: pytest.FixtureRequest) -> Any:
    mode = getattr(request, "param", None)
    if mode:
        jp_server_config["ClaudeHubApp"]["session_mode"] = mode
    return jp_server_config


@pytest.mark.parametrize("jp_server_config", ["per-connection"], indirect=True)
async def test_per_connection_mode_gives_each_websocket_its_own_process(open_term: Any) -> None:
    """The benchmark mode (terminado's pattern): one process per connection, ended with it."""
    one, two = await open_term(), await open_term()
    assert one.setup["pid"] != two.setup["pid"]
    await one.type("echo one-$((1+1))\r")
    await one.expect("one-2")
    assert "one-2" not in two.output
    pid = one.setup["pid"]
    one.close()
    async with asyncio.timeout(PATIENCE):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.1)


async def test_tutor_markers_are_stripped_and_announced(open_term: Any) -> None:
    """Output passes through the marker filter before clients (and the replay) see it."""
    term = await open_term()
    await term.type("printf 'before [STAGE_COMP''LETE:2] after-%s\\n' $((1+1))\r")
    await term.expect("after-2")
    event = await term.event("marker")
    assert event[1] == {"kind": "stage", "stage": 2}
    assert "[STAGE_COMPLETE:2]" not in term.output
    again = await open_term()  # the replay was filtered too
    await again.expect("after-2")
    assert "[STAGE_COMPLETE:2]" not in again.output


async def test_a_client_that_stops_reading_stops_the_terminal_being_read(
    open_term: Any, jp_serverapp: Any
) -> None:
    """Safety net for clients without flow control: output never piles up in the server
    faster than the connection takes it."""
    term = await open_term()
    await term.type(
        "stty -echo; yes 0123456789abcdef0123456789abcdef | head -c 30000000; echo fin-$((2+2))\r"
    )
    session = jp_serverapp.web_app.settings["claude_sessions"].shared
    async with asyncio.timeout(PATIENCE):  # we read nothing: socket buffers fill, then the server's
        while not session.paused:  # noqa: ASYNC110 (polling the server's state)
            await asyncio.sleep(0.05)
    async with asyncio.timeout(PATIENCE):  # reading again drains it and the output completes
        while "fin-4" not in term.output:
            await term.next()
            term.output = term.output[-100:]
