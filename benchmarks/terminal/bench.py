#!/usr/bin/env python3
# ruff: noqa: ASYNC109  (a copy of the shared harness: its timeout parameters stay as they are)
"""Terminal transport benchmark client (see README.md).

claudehub's copy of ../shared/bench/terminal/bench.py, plus the `claudehub` protocol: the
terminado JSON protocol with the page's pause/resume flow control in the flood test.

Measures, as a client would, a shell running in a pty behind:
  raw        a local pty opened by this process (ptyprocess; no websocket)
  ttyd       ttyd's websocket protocol (subprotocol 'tty', 1-byte type prefix)
  terminado  terminado's JSON protocol (["stdin", s] / ["stdout", s] / ["set_size", r, c])

Every target must run an interactive POSIX shell (bash) in its pty: the
client types commands into it (`stty raw -echo; ...; exec cat` for the echo
tests, `head ... | base64` for throughput, `yes ...` for the flood test) and
waits for printed markers.

    bench.py run --target raw --label raw --out results/raw.json
    bench.py run --target ttyd --url ws://127.0.0.1:17681/ws --server-pid N ...
    bench.py run --target terminado --url ws://127.0.0.1:18765/websocket ...
    bench.py table results/*.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import statistics
import sys
import time
import urllib.request
from collections import deque

try:
    import psutil
except ImportError:  # RSS columns become "n/a"
    psutil = None

ROWS, COLS = 24, 80
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def marker(name: str) -> bytes:
    return f"__TB_{name}__".encode()


def print_marker(name: str) -> str:
    # the typed text contains '%s', the output contains the marker: the echo
    # of the command line can never be mistaken for the marker itself
    return f"printf '__TB_%s__' {name}"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------


class Session:
    """One terminal. read() returns the next chunk of pty output (bytes) or None at EOF."""

    supports_flow_control = False

    async def open(self) -> None:
        raise NotImplementedError

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def read(self) -> bytes | None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def pause(self) -> None:  # ttyd flow control
        pass

    async def resume(self) -> None:
        pass

    async def wait_for(self, mark: bytes, timeout: float) -> int:
        """Read until `mark` appears; returns bytes read."""
        tail = b""
        n = 0
        async with asyncio.timeout(timeout):
            while True:
                chunk = await self.read()
                if chunk is None:
                    raise EOFError(f"EOF while waiting for {mark!r}; last output {tail[-200:]!r}")
                n += len(chunk)
                buf = tail + chunk
                if mark in buf:
                    return n
                tail = buf[-(len(mark) + 64) :]


class RawPtySession(Session):
    """Physical baseline: a pty owned by this process, read on the asyncio loop."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.proc = None
        self.fd = -1

    async def open(self) -> None:
        from ptyprocess import PtyProcess

        env = dict(os.environ)
        env.update({"TERM": "xterm-256color", "PS1": "$ ", "HISTFILE": "/dev/null"})
        self.proc = PtyProcess.spawn(self.argv, env=env, dimensions=(ROWS, COLS))
        self.fd = self.proc.fd
        os.set_blocking(self.fd, False)

    async def send(self, text: str) -> None:
        data = text.encode()
        while data:
            try:
                n = os.write(self.fd, data)
                data = data[n:]
            except BlockingIOError:
                await asyncio.sleep(0.001)

    async def read(self) -> bytes | None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(self.fd, 65536)
                return data if data else None
            except BlockingIOError:
                pass
            except OSError:  # EIO: child side closed
                return None
            fut = loop.create_future()
            loop.add_reader(self.fd, fut.set_result, None)
            try:
                await fut
            finally:
                loop.remove_reader(self.fd)

    async def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.terminate(force=True)
            except Exception:
                pass
            try:
                self.proc.close(force=True)
            except Exception:
                pass
            self.proc = None

    def child_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []


class WsSession(Session):
    protocol = ""

    def __init__(
        self,
        url: str,
        headers: list[tuple[str, str]],
        compression: bool,
        origin: str | None,
        create_url: str | None = None,
        delete_url: str | None = None,
    ):
        self.url = url
        self.headers = headers
        self.compression = compression
        self.origin = origin
        self.create_url = create_url
        self.delete_url = delete_url
        self.ws = None
        self.name = None
        self.extensions = ""

    def _http(self, method: str, url: str) -> bytes:
        req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        for k, v in self.headers:
            req.add_header(k, v)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=30) as r:
            return r.read()

    async def _connect(self, subprotocols):
        from websockets.asyncio.client import connect

        url = self.url
        if self.create_url:
            body = await asyncio.to_thread(self._http, "POST", self.create_url)
            self.name = json.loads(body)["name"]
            url = url.replace("{name}", str(self.name))
        self.ws = await connect(
            url,
            subprotocols=subprotocols,
            additional_headers=self.headers or None,
            origin=self.origin,
            compression="deflate" if self.compression else None,
            proxy=None,
            max_size=None,
            max_queue=64,
            ping_interval=None,
            open_timeout=30,
            close_timeout=5,
        )
        self.extensions = (
            self.ws.response.headers.get("Sec-WebSocket-Extensions", "") if self.ws.response else ""
        )

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:
                pass
            self.ws = None
        if self.create_url and self.name is not None:
            url = (self.delete_url or (self.create_url.rstrip("/") + "/{name}")).replace(
                "{name}", str(self.name)
            )
            try:
                await asyncio.to_thread(self._http, "DELETE", url)
            except Exception as e:  # terminal may already be gone
                print(f"warning: DELETE {url}: {e}", file=sys.stderr)
            self.name = None


class TtydSession(WsSession):
    """ttyd >= 1.7: client INPUT '0', RESIZE_TERMINAL '1', PAUSE '2', RESUME '3', JSON_DATA '{';
    server OUTPUT '0', SET_WINDOW_TITLE '1', SET_PREFERENCES '2'. Binary frames."""

    protocol = "ttyd"
    supports_flow_control = True
    fc_params = (100000, 10, 4)  # ttyd's web client: limit, highWater, lowWater

    async def open(self) -> None:
        await self._connect(["tty"])
        token = os.environ.get("TB_TTYD_AUTH_TOKEN", "")
        init = json.dumps({"AuthToken": token, "columns": COLS, "rows": ROWS})
        await self.ws.send(init.encode())

    async def send(self, text: str) -> None:
        await self.ws.send(b"0" + text.encode())

    async def pause(self) -> None:
        await self.ws.send(b"2")

    async def resume(self) -> None:
        await self.ws.send(b"3")

    async def read(self) -> bytes | None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                msg = await self.ws.recv()
            except ConnectionClosed:
                return None
            if isinstance(msg, str):
                msg = msg.encode()
            if msg[:1] == b"0":
                return msg[1:]
            # '1' window title, '2' preferences: ignore


class TerminadoSession(WsSession):
    """terminado: JSON text frames. server: ["setup", {}], ["stdout", s], ["disconnect", 1];
    client: ["stdin", s], ["set_size", rows, cols, px_h, px_w]."""

    protocol = "terminado"
    subprotocols: list[str] | None = None

    async def open(self) -> None:
        await self._connect(self.subprotocols)
        await self.ws.send(json.dumps(["set_size", ROWS, COLS, 600, 800]))

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps(["stdin", text]))

    async def read(self) -> bytes | None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                msg = await self.ws.recv()
            except ConnectionClosed:
                return None
            m = json.loads(msg)
            if m[0] == "stdout":
                return m[1].encode("utf-8", "surrogateescape")
            if m[0] == "disconnect":
                return None


class ClaudehubSession(TerminadoSession):
    """claudehub's terminal as the page (claudehub/server_ext/static/claude.js) speaks it: the
    "claudehub.v2" subprotocol (output in binary frames of UTF-8, everything else terminado's
    JSON) plus flow control: a write callback every 100000 bytes, ["pause"] above 4
    outstanding callbacks, ["resume"] below 2, and ["ack", n] (n = bytes drawn so far) in every
    callback, which gives the client a send window on the server.
    Outside the flood test the client "draws" what it receives at once (acks on receipt)."""

    protocol = "claudehub"
    subprotocols = ["claudehub.v2"]
    supports_flow_control = True
    fc_params = (100000, 4, 2)
    ack_every = 100000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.auto_ack = True
        self._received = 0
        self._acked = 0

    async def open(self) -> None:
        await super().open()
        await self.ws.send('["ack", 0]')

    async def ack(self, chars: int) -> None:
        await self.ws.send(json.dumps(["ack", chars]))

    async def read(self) -> bytes | None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                msg = await self.ws.recv()
            except ConnectionClosed:
                return None
            if isinstance(msg, bytes):
                self._received += len(msg)
                if self.auto_ack and self._received - self._acked >= self.ack_every:
                    self._acked = self._received
                    await self.ack(self._received)
                return msg
            m = json.loads(msg)
            if m[0] == "disconnect":
                return None

    async def pause(self) -> None:
        await self.ws.send('["pause"]')

    async def resume(self) -> None:
        await self.ws.send('["resume"]')


# --------------------------------------------------------------------------
# process memory
# --------------------------------------------------------------------------


def server_rss(pid: int | None) -> int | None:
    if psutil is None or not pid:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except Exception:
        return None


def server_cpu(pid: int | None) -> float | None:
    """user+system CPU seconds of the server process (not its children)."""
    if psutil is None or not pid:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:
        return None


def client_cpu() -> float:
    t = os.times()
    return t.user + t.system


def children_pss(pid: int | None, extra_pids: list[int] | None = None) -> tuple[int, int] | None:
    """(sum of PSS of all descendant processes, count)."""
    if psutil is None:
        return None
    procs = []
    try:
        if pid:
            procs = psutil.Process(pid).children(recursive=True)
        for p in extra_pids or []:
            pr = psutil.Process(p)
            procs.append(pr)
            procs.extend(pr.children(recursive=True))
    except Exception:
        return None
    total = 0
    n = 0
    for p in procs:
        try:
            mi = p.memory_full_info()
            total += getattr(mi, "pss", mi.rss)
            n += 1
        except Exception:
            pass
    return total, n


class RssSampler:
    def __init__(self, pid: int | None, period: float = 0.05):
        self.pid = pid
        self.period = period
        self.peak = None
        self._task = None

    async def _run(self):
        while True:
            r = server_rss(self.pid)
            if r is not None and (self.peak is None or r > self.peak):
                self.peak = r
            await asyncio.sleep(self.period)

    def start(self):
        if self.pid and psutil is not None:
            self._task = asyncio.create_task(self._run())

    async def stop(self):
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        r = server_rss(self.pid)
        if r is not None and (self.peak is None or r > self.peak):
            self.peak = r
        return self.peak


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


async def enter_echo_mode(s: Session, timeout: float) -> None:
    # raw mode: every byte typed goes to cat, and cat (a user process) echoes it
    await s.send(f"stty raw -echo; {print_marker('READY')}; exec cat\r")
    await s.wait_for(marker("READY"), timeout)


async def echo_samples(s: Session, n: int, timeout: float, pace=None) -> list[float]:
    lat = []
    async with asyncio.timeout(timeout):
        for i in range(n):
            if pace is not None:
                await asyncio.sleep(pace())
            ch = LETTERS[i % 26]
            want = ch.encode()
            t0 = time.perf_counter()
            await s.send(ch)
            buf = b""
            while want not in buf:
                chunk = await s.read()
                if chunk is None:
                    raise EOFError("EOF during echo test")
                buf += chunk
            lat.append(time.perf_counter() - t0)
    return lat


async def test_echo(make, n: int, timeout: float) -> dict:
    s = make()
    t0 = time.perf_counter()
    await s.open()
    await enter_echo_mode(s, timeout)
    open_s = time.perf_counter() - t0
    try:
        # a few warm-up keystrokes, not recorded
        await echo_samples(s, 20, timeout)
        lat = await echo_samples(s, n, timeout)
    finally:
        await s.close()
    return {
        "samples": len(lat),
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "mean_ms": statistics.fmean(lat) * 1e3,
        "max_ms": max(lat) * 1e3,
        "open_to_ready_ms": open_s * 1e3,
        "ws_extensions": getattr(s, "extensions", ""),
    }


async def test_concurrent(
    make,
    n_sessions: int,
    n_samples: int,
    interval_ms: float,
    timeout: float,
    server_pid: int | None,
) -> dict:
    rng = random.Random(12345)
    rss0 = server_rss(server_pid)
    sessions = [make() for _ in range(n_sessions)]
    open_lat: list[float] = []

    async def opener(s):
        ts = time.perf_counter()
        await s.open()
        await enter_echo_mode(s, timeout)
        open_lat.append(time.perf_counter() - ts)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(opener(s) for s in sessions))
        open_wall = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        rss1 = server_rss(server_pid)
        extra = [p for s in sessions if isinstance(s, RawPtySession) for p in s.child_pids()]
        kids = children_pss(server_pid, extra)

        iv = interval_ms / 1000.0

        def pace():
            return rng.uniform(0.5, 1.5) * iv

        # each session "types" n_samples keys at ~1/interval keys/s, all sessions at once
        results = await asyncio.gather(
            *(echo_samples(s, n_samples, timeout, pace) for s in sessions)
        )
        lat = [x for r in results for x in r]
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    out = {
        "sessions": n_sessions,
        "samples": len(lat),
        "interval_ms": interval_ms,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "open_all_s": open_wall,
        "open_p50_ms": pct(open_lat, 50) * 1e3,
        "open_p99_ms": pct(open_lat, 99) * 1e3,
    }
    if rss0 is not None and rss1 is not None:
        out["server_rss_idle_mb"] = rss0 / 1e6
        out["server_rss_open_mb"] = rss1 / 1e6
        out["server_rss_per_term_kb"] = (rss1 - rss0) / n_sessions / 1e3
    if kids is not None and kids[1]:
        out["child_procs"] = kids[1]
        out["child_pss_per_term_kb"] = kids[0] / n_sessions / 1e3
    return out


async def test_throughput(make, raw_bytes: int, timeout: float, server_pid: int | None) -> dict:
    s = make()
    await s.open()
    sampler = RssSampler(server_pid)
    try:
        await s.send(f"stty -echo; {print_marker('READY')}\r")
        await s.wait_for(marker("READY"), timeout)
        cmd = f"head -c {raw_bytes} /dev/urandom | base64 -w 76; {print_marker('DONE')}\r"
        sampler.start()
        cpu0 = server_cpu(server_pid)
        ccpu0 = client_cpu()
        t0 = time.perf_counter()
        await s.send(cmd)
        n = await s.wait_for(marker("DONE"), timeout)
        dt = time.perf_counter() - t0
        cpu1 = server_cpu(server_pid)
        ccpu1 = client_cpu()
        peak = await sampler.stop()
        rss_after = server_rss(server_pid)
    finally:
        await s.close()
    out = {"bytes": n, "seconds": dt, "mb_per_s": n / dt / 1e6, "client_cpu_s": ccpu1 - ccpu0}
    if cpu0 is not None and cpu1 is not None:
        out["server_cpu_s"] = cpu1 - cpu0
    if peak is not None:
        out["server_rss_peak_mb"] = peak / 1e6
        out["server_rss_after_mb"] = rss_after / 1e6 if rss_after else None
    return out


async def sigint_works(make, timeout: float) -> bool:
    """Does Ctrl-C typed into the terminal interrupt a foreground command? (It does not when
    the server inherited SIGINT=ignored, e.g. when started with `cmd &` from a non-interactive
    shell and it does not install its own SIGINT handler: then every shell it spawns and all
    their children ignore SIGINT too.)"""
    s = make()
    await s.open()
    try:
        await s.send(f"{print_marker('READY')}\r")
        await s.wait_for(marker("READY"), timeout)
        await s.send("sleep 4\r")
        await asyncio.sleep(0.3)
        await s.send("\x03")
        await s.send(f"{print_marker('SIGOK')}\r")
        try:
            await s.wait_for(marker("SIGOK"), 2.5)
            return True
        except TimeoutError:
            return False
    finally:
        await s.close()


YES_LINE = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN"  # 76 chars
)


async def test_flood_ctrlc(
    make,
    rate_mbps: float,
    flood_s: float,
    timeout: float,
    server_pid: int | None,
    browser_model: bool,
) -> dict:
    """`yes` floods the terminal; the client consumes output at `rate_mbps` (an xterm.js-like
    parse rate); after flood_s the user presses Ctrl-C. Reports how long until the output
    produced after the Ctrl-C (a marker) has been consumed, and how much backlog was in the way.

    browser_model=True (websocket targets): frames are received as fast as they arrive (a browser
    WebSocket has no receive backpressure) into a queue drained at the parse rate; for ttyd the
    client applies ttyd's own web-client flow control (PAUSE/RESUME; limit 100000 B,
    highWater 10, lowWater 4). browser_model=False (raw pty): the reader itself is rate-limited,
    so the kernel pty buffer pushes back on the producer (a native terminal)."""
    rate = rate_mbps * 1e6
    if not await sigint_works(make, timeout):
        return {
            "rate_mb_per_s": rate_mbps,
            "flood_s": flood_s,
            "sigint_ok": False,
            "ctrlc_latency_s": None,
            "error": "Ctrl-C does not interrupt commands in this terminal (SIGINT ignored in the server's "
            "environment?); flood test skipped",
        }
    s = make()
    await s.open()
    sampler = RssSampler(server_pid)
    fc = browser_model and s.supports_flow_control and os.environ.get("TB_TTYD_FLOWCTL", "1") != "0"
    limit, high, low = getattr(s, "fc_params", (100000, 10, 4))
    acks = fc and hasattr(s, "ack")
    if acks:
        s.auto_ack = False  # the consumer acknowledges what it has parsed, like the page
    res: dict = {
        "rate_mb_per_s": rate_mbps,
        "flood_s": flood_s,
        "client_flow_control": fc,
        "sigint_ok": True,
    }
    try:
        await s.send(f"{print_marker('READY')}\r")
        await s.wait_for(marker("READY"), timeout)
        mark = marker("INTR")
        sampler.start()
        t_start = time.perf_counter()
        await s.send(f"yes {YES_LINE}\r")
        t_ctrlc = None
        done = asyncio.Event()
        result_latency = None
        backlog_after_ctrlc = 0
        received_total = 0
        consumed_total = 0
        peak_queue = 0

        if not browser_model:
            # native terminal: read only as fast as we parse
            tail = b""
            debt = 0.0
            async with asyncio.timeout(flood_s + timeout):
                while True:
                    now = time.perf_counter()
                    if t_ctrlc is None and now - t_start >= flood_s:
                        t_ctrlc = now
                        await s.send("\x03")
                        await s.send(f"{print_marker('INTR')}\r")
                    chunk = await s.read()
                    if chunk is None:
                        raise EOFError("EOF in flood test")
                    received_total += len(chunk)
                    consumed_total += len(chunk)
                    if t_ctrlc is not None:
                        backlog_after_ctrlc += len(chunk)
                    debt += len(chunk) / rate
                    if debt >= 0.002:
                        await asyncio.sleep(debt)
                        debt = 0.0
                    buf = tail + chunk
                    if t_ctrlc is not None and mark in buf:
                        result_latency = time.perf_counter() - t_ctrlc
                        break
                    tail = buf[-32:]
        else:
            q: deque = deque()  # (chunk, has_callback)
            state = {
                "queued": 0,
                "written": 0,
                "pending": 0,
                "marker_in_q": False,
                "marker_bytes_ahead": 0,
                "pauses": 0,
            }
            wake = asyncio.Event()

            async def receiver():
                nonlocal received_total, backlog_after_ctrlc, peak_queue, result_latency
                tail = b""
                while not done.is_set():
                    chunk = await s.read()
                    if chunk is None:
                        raise EOFError("EOF in flood test")
                    received_total += len(chunk)
                    cb = False
                    if fc:
                        state["written"] += len(chunk)
                        if state["written"] > limit:
                            cb = True
                            state["pending"] += 1
                            state["written"] = 0
                            if state["pending"] > high:
                                state["pauses"] += 1
                                await s.pause()
                    q.append((chunk, cb))
                    state["queued"] += len(chunk)
                    peak_queue = max(peak_queue, state["queued"])
                    wake.set()
                    if t_ctrlc is not None:
                        backlog_after_ctrlc += len(chunk)
                        buf = tail + chunk
                        if mark in buf:
                            # everything queued up to here is consumed at `rate` from now on:
                            # the remaining wait is deterministic, so compute it instead of sleeping
                            now = time.perf_counter()
                            result_latency = (now - t_ctrlc) + state["queued"] / rate
                            done.set()
                            return
                        tail = buf[-32:]
                    else:
                        tail = b""

            async def consumer():
                nonlocal consumed_total
                debt = 0.0
                while not done.is_set():
                    if not q:
                        wake.clear()
                        await wake.wait()
                        continue
                    chunk, cb = q.popleft()
                    debt += len(chunk) / rate
                    if debt >= 0.002:
                        await asyncio.sleep(debt)
                        debt = 0.0
                    state["queued"] -= len(chunk)
                    consumed_total += len(chunk)
                    if cb:
                        if acks:
                            await s.ack(consumed_total)
                        state["pending"] = max(state["pending"] - 1, 0)
                        if state["pending"] < low:
                            await s.resume()

            async def presser():
                nonlocal t_ctrlc
                await asyncio.sleep(max(0.0, flood_s - (time.perf_counter() - t_start)))
                res["queued_at_ctrlc_mb"] = state["queued"] / 1e6
                t_ctrlc = time.perf_counter()
                await s.send("\x03")
                await s.send(f"{print_marker('INTR')}\r")

            tasks = [asyncio.create_task(c) for c in (receiver(), consumer(), presser())]
            try:
                async with asyncio.timeout(flood_s + timeout):
                    await done.wait()
            except TimeoutError:
                pass
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    try:
                        await t
                    except (asyncio.CancelledError, Exception) as e:
                        if not isinstance(e, asyncio.CancelledError):
                            res.setdefault("error", repr(e))
            res["client_queue_peak_mb"] = peak_queue / 1e6
            res["pause_msgs"] = state["pauses"]
        peak = await sampler.stop()
    finally:
        await s.close()
    res["received_mb"] = received_total / 1e6
    res["bytes_after_ctrlc_mb"] = backlog_after_ctrlc / 1e6
    res["ctrlc_latency_s"] = result_latency  # None = did not finish within timeout
    if peak is not None:
        res["server_rss_peak_mb"] = peak / 1e6
    return res


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------


def parse_headers(spec: str | None, cookie: str | None) -> list[tuple[str, str]]:
    hs = []
    if spec:
        for line in spec.replace("||", "\n").splitlines():
            line = line.strip()
            if line:
                k, _, v = line.partition(":")
                hs.append((k.strip(), v.strip()))
    if cookie:
        hs.append(("Cookie", cookie))
    return hs


def make_factory(args):
    compression = os.environ.get("TB_WS_COMPRESSION", "deflate").lower() not in (
        "0",
        "none",
        "off",
        "no",
    )
    if args.target == "raw":
        argv = shlex.split(args.shell)
        return lambda: RawPtySession(argv)
    headers = parse_headers(args.headers, args.cookie)
    proto = args.protocol or args.target
    cls = {"ttyd": TtydSession, "terminado": TerminadoSession, "claudehub": ClaudehubSession}[proto]
    return lambda: cls(
        args.url, headers, compression, args.origin, args.create_url, args.delete_url
    )


async def run(args) -> dict:
    make = make_factory(args)
    tmo = args.timeout
    out: dict = {
        "label": args.label,
        "target": args.target,
        "protocol": args.protocol or args.target,
        "url": args.url,
        "server_pid_given": bool(args.server_pid),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host_cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    tests = args.tests.split(",")
    if "echo" in tests:
        out["echo"] = await test_echo(make, args.echo_samples, tmo)
        print(f"[{args.label}] echo: {json.dumps(out['echo'])}", file=sys.stderr)
    if "concurrent" in tests:
        out["concurrent"] = await test_concurrent(
            make, args.sessions, args.conc_samples, args.conc_interval_ms, tmo * 4, args.server_pid
        )
        print(f"[{args.label}] concurrent: {json.dumps(out['concurrent'])}", file=sys.stderr)
    if "throughput" in tests:
        out["throughput"] = await test_throughput(make, args.raw_bytes, tmo * 6, args.server_pid)
        print(f"[{args.label}] throughput: {json.dumps(out['throughput'])}", file=sys.stderr)
    if "flood" in tests:
        out["flood"] = await test_flood_ctrlc(
            make,
            args.parse_rate,
            args.flood_s,
            args.flood_timeout,
            args.server_pid,
            browser_model=args.target != "raw",
        )
        print(f"[{args.label}] flood: {json.dumps(out['flood'])}", file=sys.stderr)
    out["loadavg_end"] = os.getloadavg()
    return out


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------

ROWS_SPEC = [
    # (title, path, fmt, ratio kind)  ratio: "lat" = x/raw, "thr" = x/raw, None = no ratio
    ("echo p50 (ms)", ("echo", "p50_ms"), "{:.3f}", "x"),
    ("echo p99 (ms)", ("echo", "p99_ms"), "{:.3f}", "x"),
    ("echo p50 minus raw (ms)", ("echo", "p50_ms"), "{:+.3f}", "d"),
    ("throughput (MB/s)", ("throughput", "mb_per_s"), "{:.1f}", "x"),
    ("  bytes received (MB)", ("throughput", "bytes"), "{:.1f}", None),
    ("  server CPU during it (s)", ("throughput", "server_cpu_s"), "{:.2f}", None),
    ("  client CPU during it (s)", ("throughput", "client_cpu_s"), "{:.2f}", None),
    ("50-session echo p50 (ms)", ("concurrent", "p50_ms"), "{:.3f}", "x"),
    ("50-session echo p99 (ms)", ("concurrent", "p99_ms"), "{:.3f}", "x"),
    ("50-session open all (s)", ("concurrent", "open_all_s"), "{:.2f}", "x"),
    ("server RSS idle (MB)", ("concurrent", "server_rss_idle_mb"), "{:.1f}", None),
    ("server RSS / open term (KB)", ("concurrent", "server_rss_per_term_kb"), "{:.0f}", None),
    ("shell PSS / open term (KB)", ("concurrent", "child_pss_per_term_kb"), "{:.0f}", None),
    ("server RSS peak in throughput (MB)", ("throughput", "server_rss_peak_mb"), "{:.1f}", None),
    ("flood: Ctrl-C -> prompt (s)", ("flood", "ctrlc_latency_s"), "{:.2f}", None),
    ("flood: backlog after Ctrl-C (MB)", ("flood", "bytes_after_ctrlc_mb"), "{:.2f}", None),
    ("flood: client queue peak (MB)", ("flood", "client_queue_peak_mb"), "{:.1f}", None),
    ("flood: server RSS peak (MB)", ("flood", "server_rss_peak_mb"), "{:.1f}", None),
]


def get(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    if path[-1] == "bytes" and d is not None:
        return d / 1e6
    return d


def table(files: list[str]) -> str:
    res = []
    for f in files:
        with open(f) as fh:
            res.append(json.load(fh))
    # columns in the order the files were given
    base = next((r for r in res if r["target"] == "raw"), None)
    cols = [r["label"] for r in res]
    lines = []
    w0 = max(len(t[0]) for t in ROWS_SPEC) + 2
    cw = 22
    lines.append("metric".ljust(w0) + "".join(c.rjust(cw) for c in cols))
    lines.append("-" * (w0 + cw * len(cols)))
    for title, path, fmt, kind in ROWS_SPEC:
        row = title.ljust(w0)
        bv = get(base, path) if base else None
        for r in res:
            v = get(r, path)
            if (
                v is None
                and path == ("flood", "ctrlc_latency_s")
                and isinstance(r.get("flood"), dict)
            ):
                cell = "SIGINT ignored" if r["flood"].get("sigint_ok") is False else "timeout"
            elif v is None:
                cell = "n/a"
            elif kind == "d":
                cell = fmt.format(v - bv) if (bv is not None and r is not base) else "-"
            else:
                cell = fmt.format(v)
                if kind == "x" and bv and r is not base:
                    cell += f" ({v / bv:.1f}x)" if v / bv >= 10 else f" ({v / bv:.2f}x)"
            row += cell.rjust(cw)
        lines.append(row)
    ext = [
        f"{r['label']}: {r.get('echo', {}).get('ws_extensions') or '-'}"
        for r in res
        if r["target"] != "raw"
    ]
    lines.append("")
    lines.append("ratios are target / raw pty.  ws extensions negotiated: " + "; ".join(ext))
    la = [f"{r['label']} {r['loadavg_start'][0]:.2f}->{r['loadavg_end'][0]:.2f}" for r in res]
    lines.append("1-min loadavg start->end: " + ", ".join(la))
    if res and "flood" in res[0]:
        f0 = res[0]["flood"]
        fcs = ", ".join(
            f"{r['label']}: {r['flood'].get('client_flow_control')}"
            for r in res
            if isinstance(r.get("flood"), dict) and r["target"] != "raw"
        )
        lines.append(
            f"flood: `yes` for {f0['flood_s']}s, client parses at {f0['rate_mb_per_s']} MB/s "
            f"(client flow control: {fcs})"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--target", choices=["raw", "ttyd", "terminado", "custom"], required=True)
    r.add_argument("--label", default=None)
    r.add_argument("--url", help="websocket URL (may contain {name} when --create-url is used)")
    r.add_argument(
        "--protocol",
        choices=["ttyd", "terminado", "claudehub"],
        help="wire protocol for --target custom (claudehub = terminado + pause/resume)",
    )
    r.add_argument("--headers", default=os.environ.get("TB_CUSTOM_HEADERS"))
    r.add_argument("--cookie", default=os.environ.get("TB_CUSTOM_COOKIE"))
    r.add_argument("--origin", default=os.environ.get("TB_CUSTOM_ORIGIN"))
    r.add_argument(
        "--create-url",
        default=os.environ.get("TB_CUSTOM_CREATE_URL"),
        help="POST here to create a terminal; JSON reply's 'name' fills {name} in --url",
    )
    r.add_argument("--delete-url", default=os.environ.get("TB_CUSTOM_DELETE_URL"))
    r.add_argument("--server-pid", type=int, default=None, help="server process id, for RSS")
    r.add_argument("--shell", default=os.environ.get("TB_SHELL", "bash --norc --noprofile -i"))
    r.add_argument(
        "--tests", default=os.environ.get("TB_TESTS", "echo,concurrent,throughput,flood")
    )
    r.add_argument("--echo-samples", type=int, default=env_int("TB_ECHO_SAMPLES", 500))
    r.add_argument("--sessions", type=int, default=env_int("TB_SESSIONS", 50))
    r.add_argument("--conc-samples", type=int, default=env_int("TB_CONC_SAMPLES", 100))
    r.add_argument("--conc-interval-ms", type=float, default=env_float("TB_CONC_INTERVAL_MS", 50))
    r.add_argument(
        "--raw-bytes",
        type=int,
        default=env_int("TB_RAW_BYTES", 37_500_000),
        help="bytes fed to base64 (37.5e6 -> 50e6 chars of output)",
    )
    r.add_argument("--parse-rate", type=float, default=env_float("TB_PARSE_RATE_MBPS", 10))
    r.add_argument("--flood-s", type=float, default=env_float("TB_FLOOD_S", 3))
    r.add_argument("--flood-timeout", type=float, default=env_float("TB_FLOOD_TIMEOUT_S", 60))
    r.add_argument("--timeout", type=float, default=env_float("TB_TIMEOUT_S", 30))
    r.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.cmd == "table":
        print(table(args.files))
        return
    if args.target != "raw" and not args.url:
        ap.error("--url is required for websocket targets")
    if args.target == "custom" and not args.protocol:
        ap.error("--protocol is required for --target custom")
    args.label = args.label or args.target
    out = asyncio.run(run(args))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
