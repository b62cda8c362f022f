"""Local mode reaches nothing but the key proxy: the real CLI, through the launcher, in a
network namespace with only loopback, every network call of it and its children traced.

Local mode installs no managed settings, so the only switches that keep Claude Code from
calling out (telemetry, error reports, update checks, the official plugin marketplace's
``git clone``, background tasks) are the ones the launcher copies from
``managed-settings.json``'s ``env``. The fake upstream (standing in for the key proxy) runs in
the same namespace; ``strace -f`` records every ``connect``/``sendto``/``sendmsg`` of the
launcher, the CLI and whatever they start. The control run, without the two switches the
launcher used to miss, shows the trace does see the calls the switches prevent.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pexpect
import pytest

from tests.fakes.upstream import DEFAULT_REPLY

from .sandbox import REPO
from .test_cli_policy import tool_use
from .test_interactive import Terminal

pytestmark = [pytest.mark.cli, pytest.mark.slow]

#: The two switches the launcher's hand-made copy of the managed env missed (issue 15).
MISSED_BEFORE = (
    "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL",
    "CLAUDE_CODE_DISABLE_BACKGROUND_TASKS",
)

#: A model name the CLI knows, so that its "model isn't recognized" notice does not show.
KNOWN_MODEL = "claude-sonnet-4-5"

#: In the namespace: bring loopback up, start the fake upstream, wait for it, then run the
#: launcher under strace (network calls of every process, with their addresses).
_SCRIPT = r"""
set -e
ip link set lo up
"$PY" -m tests.fakes.upstream --port "$PORT" ${SCRIPT:+--script "$SCRIPT"} >"$LOGDIR/upstream.log" 2>&1 &
for i in $(seq 100); do
  "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
    "$PORT" 2>/dev/null && break
  sleep 0.1
done
exec strace -f -qq -s 200 -e trace=connect,sendto,sendmsg,sendmmsg -o "$LOGDIR/trace" \
  "$PY" -m claudehub.server_ext.launcher "$@"
"""

#: ``connect(fd, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("1.2.3.4")}``
_INET = re.compile(
    r"sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\).*?"
    r"(?:inet_addr\(\"(?P<v4>[^\"]+)\"\)|inet_pton\(AF_INET6, \"(?P<v6>[^\"]+)\")"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def inet_destinations(trace: str) -> list[tuple[str, int]]:
    """Every (address, port) an AF_INET/AF_INET6 connect or send in the trace went to."""
    found = []
    for line in trace.splitlines():
        m = _INET.search(line)
        if m:
            found.append((m["v4"] or m["v6"], int(m["port"])))
    return found


def run_local_mode_in_netns(
    claude_cli: Path, managed: Path, logdir: Path, *, author: bool = False
) -> tuple[Terminal, list[tuple[str, int]], int]:
    """Start the launcher as local mode does, ask one question, return screen and calls.

    With ``author``, an author session's launcher: the draft folder instead of a course.
    """
    home = logdir / "home"
    course = logdir / "course"
    home.mkdir()
    course.mkdir()
    (course / "CLAUDE.md").write_text("# Tutor\n\nYou are the tutor.\n", encoding="utf-8")
    script = ""
    if author:
        (course / "paper").mkdir()
        (course / "paper" / "paper.md").write_text("## Page 1\n\nA paper.\n", encoding="utf-8")
        # the answer writes a lesson into the draft, then says the usual reply
        write = {"file_path": str(course / "lesson.md"), "content": "# Lesson 1\n"}
        replies = [[tool_use("Write", write)], DEFAULT_REPLY]
        (logdir / "script.json").write_text(json.dumps(replies), encoding="utf-8")
        script = str(logdir / "script.json")
    port = _free_port()
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "HOME": str(home),
        "PY": sys.executable,
        "PORT": str(port),
        "SCRIPT": script,
        "LOGDIR": str(logdir),
        "PYTHONPATH": str(REPO),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": "chs1.netns-test-token.0123456789abcdefABCDEF",
        "ANTHROPIC_MODEL": KNOWN_MODEL,
        ("CLAUDEHUB_DRAFT_DIR" if author else "CLAUDEHUB_COURSE_DIR"): str(course),
        "CLAUDEHUB_CLAUDE_BIN": str(claude_cli),
        # the host has no refusing stub (local mode); /bin/false refuses too
        "CLAUDEHUB_SHELL_STUB": "/bin/false",
    }
    child = pexpect.spawn(
        "unshare",
        ["-n", "sh", "-c", _SCRIPT, "sh", f"--Launcher.managed_settings={managed}"],
        env=env,
        cwd=str(REPO),
        dimensions=(40, 120),
        encoding="utf-8",
        codec_errors="replace",
    )
    term = Terminal(child)
    try:
        term.wait_for(lambda t: "❯" in t and "don't ask" in t, 60, "Claude's prompt")
        child.send("What is this course about?")
        term.pump(0.5)
        child.send("\r")
        term.wait_for(lambda t: DEFAULT_REPLY in t, 60, "the model's answer")
        # what runs in the background (marketplace install, update check) has time to try
        term.pump(8.0)
    finally:
        child.close(force=True)
    trace = (logdir / "trace").read_text(encoding="utf-8", errors="replace")
    return term, inet_destinations(trace), port


def test_local_mode_calls_only_the_key_proxy_and_shows_no_error(
    claude_cli: Path, tmp_path: Path
) -> None:
    packaged = REPO / "claudehub" / "server_ext" / "managed-settings.json"
    term, calls, port = run_local_mode_in_netns(claude_cli, packaged, tmp_path)
    assert calls, "the trace saw no network call at all (not even the model's answer)"
    assert set(calls) == {("127.0.0.1", port)}, calls
    screen = term.text
    for complaint in ("⚠", "rror", "failed", "Failed", "Unable", "unable to"):
        assert complaint not in screen, screen[-3000:]


def test_an_author_session_calls_only_the_key_proxy_too(claude_cli: Path, tmp_path: Path) -> None:
    """The author sandbox (Write/Edit in its draft) under its own policy reaches nothing but
    the key proxy either: its launcher copies the same switches from the author policy."""
    packaged = REPO / "claudehub" / "server_ext" / "managed-settings-author.json"
    term, calls, port = run_local_mode_in_netns(claude_cli, packaged, tmp_path, author=True)
    assert calls, "the trace saw no network call at all (not even the model's answer)"
    assert set(calls) == {("127.0.0.1", port)}, calls
    # it was an author session: Claude's Write landed in the draft
    lesson = tmp_path / "course" / "lesson.md"
    assert lesson.read_text(encoding="utf-8") == "# Lesson 1\n", term.text[-2000:]


def test_control_without_two_switches_the_cli_calls_out(claude_cli: Path, tmp_path: Path) -> None:
    """The switches the launcher used to copy by hand, which missed two: the CLI then looks
    up a name (the official plugin marketplace's git clone) through the host's DNS server.
    So the test above notices a switch that goes missing."""
    packaged = REPO / "claudehub" / "server_ext" / "managed-settings.json"
    switches = json.loads(packaged.read_text(encoding="utf-8"))["env"]
    for name in MISSED_BEFORE:
        del switches[name]
    fewer = tmp_path / "managed-fewer-switches.json"
    fewer.write_text(json.dumps({"env": switches}), encoding="utf-8")
    logdir = tmp_path / "run"
    logdir.mkdir()
    _term, calls, port = run_local_mode_in_netns(claude_cli, fewer, logdir)
    elsewhere = {c for c in calls if c != ("127.0.0.1", port)}
    assert elsewhere, calls
    assert all(p == 53 for _addr, p in elsewhere), elsewhere  # DNS first; no route beyond
