#!/usr/bin/env python3
# ruff: noqa
# Copied from the shared reference harness (../shared/bench/keyproxy); keep in sync.
"""Load driver for Anthropic API-key proxies (loopback only), plus a table printer.

  bench.py run   --url BASE --upstream UPSTREAM_URL [--key KEY] [--pid PID] --label L --out FILE
  bench.py table FILE [FILE ...]            side-by-side table, ratios vs the first file
  bench.py check --url BASE --upstream U    quick correctness check only (no load)

BASE is what a client would put in ANTHROPIC_BASE_URL (the bench appends
/v1/messages). Point it at the fake upstream itself for the physical baseline.
UPSTREAM is the fake upstream (fake_upstream.py); its /_stats show which key and
headers actually arrived, so key replacement and header pass-through are checked.

Phases (defaults keep one run under ~40 s):
  json_cN    non-streaming POST /v1/messages, N concurrent workers, --duration s each
  stream_cN  streaming POST /v1/messages (--stream-events deltas, --stream-delay-ms
             apart); time-to-first-event (TTFE) and total stream time
  hold       --hold-streams streams opened at once, each ~--hold-secs long;
             max concurrently open streams seen by the client, errors counted
  memory     RSS (pid + children) of --pid sampled every 0.1 s: idle, per-phase peak
  cpu        CPU seconds (user+sys, pid + children) spent by --pid per phase

Needs aiohttp; psutil is optional (falls back to /proc for RSS/CPU of one pid).
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time

try:
    import aiohttp
except ImportError:  # pragma: no cover
    sys.exit("bench.py needs aiohttp (pip install aiohttp)")

try:
    import psutil  # type: ignore
except ImportError:  # pragma: no cover
    psutil = None

now = time.perf_counter

BETA = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
VERSION = "2023-06-01"


# ----------------------------------------------------------------- process stats
class Proc:
    """RSS / CPU of a pid and its descendants."""

    def __init__(self, pid):
        self.pid = pid
        self.p = None
        if pid and psutil:
            try:
                self.p = psutil.Process(pid)
            except psutil.Error:
                self.p = None

    def _procs(self):
        if not self.p:
            return []
        out = [self.p]
        try:
            out += self.p.children(recursive=True)
        except psutil.Error:
            pass
        return out

    def rss_mb(self):
        if not self.pid:
            return None
        if self.p:
            tot = 0
            for q in self._procs():
                try:
                    tot += q.memory_info().rss
                except psutil.Error:
                    pass
            return tot / 2**20
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        return int(ln.split()[1]) / 1024
        except OSError:
            return None
        return None

    def cpu_s(self):
        if not self.pid:
            return None
        if self.p:
            tot = 0.0
            for q in self._procs():
                try:
                    t = q.cpu_times()
                    tot += t.user + t.system
                except psutil.Error:
                    pass
            return tot
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return None


class Sampler:
    def __init__(self, proc, every=0.1):
        self.proc, self.every = proc, every
        self.peak = None
        self.task = None

    async def _run(self):
        while True:
            r = self.proc.rss_mb()
            if r is not None:
                self.peak = r if self.peak is None else max(self.peak, r)
            await asyncio.sleep(self.every)

    def reset_peak(self):
        self.peak = self.proc.rss_mb()

    def start(self):
        if self.proc.pid:
            self.task = asyncio.ensure_future(self._run())

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


# ----------------------------------------------------------------- helpers
def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ms(x):
    return None if x is None else round(x * 1000, 3)


def make_body(kb, stream, events, delay_ms):
    filler = ("You are a careful coding agent. " * 64)[: max(0, kb * 1024 - 300)]
    return json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": filler}],
            "messages": [{"role": "user", "content": "Say hello."}],
            "stream": stream,
            "_fake": {"events": events, "delay_ms": delay_ms},
        }
    ).encode()


class Client:
    def __init__(self, a):
        self.a = a
        self.url = a.url.rstrip("/") + "/v1/messages"
        self.count_url = a.url.rstrip("/") + "/v1/messages/count_tokens"
        h = {
            "content-type": "application/json",
            "anthropic-version": VERSION,
            "anthropic-beta": BETA,
            "user-agent": "keyproxy-bench/1 (claude-cli compatible)",
            "x-claude-code-session-id": "bench-session-0001",
        }
        if a.key:
            if a.auth == "bearer":
                h["authorization"] = "Bearer " + a.key
            else:
                h["x-api-key"] = a.key
        self.h = h

    def headers(self, events, delay_ms):
        h = dict(self.h)
        h["x-fake-events"] = str(events)
        h["x-fake-delay-ms"] = str(delay_ms)
        return h

    def session(self, limit):
        conn = aiohttp.TCPConnector(
            limit=limit, limit_per_host=0, force_close=False, enable_cleanup_closed=True
        )
        return aiohttp.ClientSession(
            connector=conn,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
            auto_decompress=False,
        )


async def one_json(sess, c, body, hdrs):
    t0 = now()
    async with sess.post(c.url, data=body, headers=hdrs) as r:
        data = await r.read()
        st = r.status
    dt = now() - t0
    ok = st == 200 and b'"content"' in data
    return ok, st, dt


async def one_stream(sess, c, body, hdrs, expect, on_open=None, on_close=None):
    """Returns (ok, status_or_err, ttfe, total, n_delta)."""
    t0 = now()
    ttfe = None
    n_delta = 0
    stopped = False
    opened = False
    try:
        async with sess.post(c.url, data=body, headers=hdrs) as r:
            if r.status != 200:
                await r.read()
                return False, r.status, None, now() - t0, 0
            async for line in r.content:
                if ttfe is None and line.startswith(b"event:"):
                    ttfe = now() - t0
                    opened = True
                    if on_open:
                        on_open()
                if line.startswith(b"event: content_block_delta"):
                    n_delta += 1
                elif line.startswith(b"event: message_stop"):
                    stopped = True
        total = now() - t0
    finally:
        if opened and on_close:
            on_close()
    ok = stopped and n_delta == expect
    return ok, (200 if ok else "incomplete"), ttfe, total, n_delta


def errname(e):
    return type(e).__name__


async def run_json(c, conc, dur, warm, kb, proc):
    body = make_body(kb, False, 20, 0)
    hdrs = c.headers(20, 0)
    lat, errs = [], {}
    async with c.session(conc) as sess:

        async def worker(until, record):
            while now() < until:
                try:
                    ok, st, dt = await one_json(sess, c, body, hdrs)
                except Exception as e:  # noqa: BLE001
                    ok, st, dt = False, errname(e), 0
                if record:
                    if ok:
                        lat.append(dt)
                    else:
                        errs[str(st)] = errs.get(str(st), 0) + 1

        if warm:
            t = now() + warm
            await asyncio.gather(*(worker(t, False) for _ in range(conc)))
        cpu0, t0 = proc.cpu_s(), now()
        t = t0 + dur
        await asyncio.gather(*(worker(t, True) for _ in range(conc)))
        el = now() - t0
        cpu1 = proc.cpu_s()
    return {
        "conc": conc,
        "n": len(lat),
        "errors": errs,
        "secs": round(el, 3),
        "rps": round(len(lat) / el, 1),
        "p50_ms": ms(pct(lat, 50)),
        "p90_ms": ms(pct(lat, 90)),
        "p99_ms": ms(pct(lat, 99)),
        "mean_ms": ms(statistics.fmean(lat)) if lat else None,
        "proxy_cpu_ms_per_req": (
            round((cpu1 - cpu0) * 1000 / max(1, len(lat)), 4)
            if cpu0 is not None and cpu1 is not None
            else None
        ),
    }


async def run_stream(c, conc, dur, warm, kb, events, delay_ms, proc):
    body = make_body(kb, True, events, delay_ms)
    hdrs = c.headers(events, delay_ms)
    ttfe, tot, errs = [], [], {}
    async with c.session(conc) as sess:

        async def worker(until, record):
            while now() < until:
                try:
                    ok, st, a, b, _ = await one_stream(sess, c, body, hdrs, events)
                except Exception as e:  # noqa: BLE001
                    ok, st, a, b = False, errname(e), None, None
                if record:
                    if ok:
                        ttfe.append(a)
                        tot.append(b)
                    else:
                        errs[str(st)] = errs.get(str(st), 0) + 1

        if warm:
            t = now() + warm
            await asyncio.gather(*(worker(t, False) for _ in range(conc)))
        cpu0, t0 = proc.cpu_s(), now()
        t = t0 + dur
        await asyncio.gather(*(worker(t, True) for _ in range(conc)))
        el = now() - t0
        cpu1 = proc.cpu_s()
    return {
        "conc": conc,
        "events": events,
        "delay_ms": delay_ms,
        "n": len(tot),
        "errors": errs,
        "secs": round(el, 3),
        "streams_per_s": round(len(tot) / el, 1),
        "ttfe_p50_ms": ms(pct(ttfe, 50)),
        "ttfe_p99_ms": ms(pct(ttfe, 99)),
        "total_p50_ms": ms(pct(tot, 50)),
        "total_p99_ms": ms(pct(tot, 99)),
        "proxy_cpu_ms_per_stream": (
            round((cpu1 - cpu0) * 1000 / max(1, len(tot)), 4)
            if cpu0 is not None and cpu1 is not None
            else None
        ),
    }


async def run_hold(c, n, secs, kb, proc, sampler):
    events = 10
    delay_ms = secs * 1000 / events
    body = make_body(kb, True, events, delay_ms)
    hdrs = c.headers(events, delay_ms)
    state = {"open": 0, "max": 0, "t_all_open": None}
    t0 = now()

    def on_open():
        state["open"] += 1
        if state["open"] > state["max"]:
            state["max"] = state["open"]
            if state["max"] == n:
                state["t_all_open"] = now() - t0

    def on_close():
        state["open"] -= 1

    res, errs, ttfe, tot = [], {}, [], []
    async with c.session(0) as sess:

        async def one():
            try:
                return await one_stream(sess, c, body, hdrs, events, on_open, on_close)
            except Exception as e:  # noqa: BLE001
                return False, errname(e), None, None, 0

        cpu0 = proc.cpu_s()
        res = await asyncio.gather(*(one() for _ in range(n)))
        cpu1 = proc.cpu_s()
    for ok, st, a, b, _ in res:
        if ok:
            ttfe.append(a)
            tot.append(b)
        else:
            errs[str(st)] = errs.get(str(st), 0) + 1
    return {
        "streams": n,
        "target_secs": secs,
        "ok": len(tot),
        "errors": errs,
        "max_open": state["max"],
        "all_open_after_ms": ms(state["t_all_open"]),
        "ttfe_p50_ms": ms(pct(ttfe, 50)),
        "ttfe_p99_ms": ms(pct(ttfe, 99)),
        "ttfe_max_ms": ms(max(ttfe)) if ttfe else None,
        "total_p50_ms": ms(pct(tot, 50)),
        "total_max_ms": ms(max(tot)) if tot else None,
        "wall_ms": ms(now() - t0),
        "proxy_cpu_s": round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None,
        "proxy_rss_peak_mb": round(sampler.peak, 1) if sampler.peak is not None else None,
    }


async def http_json(sess, method, url, **kw):
    async with sess.request(method, url, **kw) as r:
        txt = await r.text()
        try:
            return r.status, json.loads(txt)
        except ValueError:
            return r.status, txt


async def checks(c, a, sess):
    """Correctness: key swap, header pass-through, count_tokens, bad key."""
    out = {}
    st, js = await http_json(
        sess,
        "POST",
        c.count_url,
        data=json.dumps(
            {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
        ),
        headers=c.h,
    )
    out["count_tokens_status"] = st
    out["count_tokens_ok"] = st == 200 and isinstance(js, dict) and "input_tokens" in js
    st, js = await http_json(
        sess, "POST", c.url, data=make_body(1, False, 3, 0), headers=c.headers(3, 0)
    )
    out["json_status"] = st
    ok, st, a_, b_, nd = await one_stream(sess, c, make_body(1, True, 5, 0), c.headers(5, 0), 5)
    out["stream_ok"] = ok
    bad = dict(c.h)
    bad.pop("authorization", None)
    bad["x-api-key"] = "sk-definitely-not-valid"
    st, _ = await http_json(sess, "POST", c.url, data=make_body(1, False, 3, 0), headers=bad)
    out["bad_client_key_status"] = st
    return out


async def upstream_stats(sess, up):
    if not up:
        return None
    try:
        st, js = await http_json(sess, "GET", up.rstrip("/") + "/_stats")
        return js if st == 200 else None
    except Exception:  # noqa: BLE001
        return None


async def upstream_reset(sess, up):
    if up:
        try:
            await http_json(sess, "POST", up.rstrip("/") + "/_reset")
        except Exception:  # noqa: BLE001
            pass


def summarize_upstream(s, total_sent):
    if not s:
        return None
    n = s.get("requests", 0)
    want = set(BETA.split(","))
    betas = s.get("anthropic_beta", {})
    beta_exact = betas.get(BETA, 0)
    # order-insensitive: every beta the client sent arrived (extra betas allowed)
    beta = sum(c for v, c in betas.items() if want <= {t.strip() for t in v.split(",")})
    ver = s.get("anthropic_version", {}).get(VERSION, 0)
    return {
        "requests_seen": n,
        "requests_measured": total_sent,
        "real_key_ok": s.get("real_key_ok"),
        "real_key_bad": s.get("real_key_bad"),
        "authorization_forwarded": n - s.get("authorization", {}).get("<none>", 0),
        "anthropic_beta_forwarded_pct": round(100 * beta / n, 1) if n else None,
        "anthropic_beta_exact_pct": round(100 * beta_exact / n, 1) if n else None,
        "anthropic_version_forwarded_pct": round(100 * ver / n, 1) if n else None,
        "session_id_forwarded_pct": round(100 * s.get("session_id_seen", 0) / n, 1) if n else None,
        "upstream_streams_open_max": s.get("streams_open_max"),
        "upstream_streams_aborted": s.get("streams_aborted"),
    }


async def cmd_run(a):
    c = Client(a)
    proc = Proc(a.pid)
    sampler = Sampler(proc)
    res = {
        "label": a.label,
        "url": a.url,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "params": {
            k: getattr(a, k)
            for k in (
                "duration",
                "warmup",
                "json_conc",
                "stream_conc",
                "stream_events",
                "stream_delay_ms",
                "hold_streams",
                "hold_secs",
                "body_kb",
                "auth",
            )
        },
        "phases": {},
    }
    t_start = now()
    sent = 0
    async with c.session(8) as s0:
        await upstream_reset(s0, a.upstream)
        res["checks"] = await checks(c, a, s0)
        sent += 4
    sampler.start()
    await asyncio.sleep(0.3)
    res["rss_idle_mb"] = round(proc.rss_mb(), 1) if a.pid and proc.rss_mb() else None
    for conc in a.json_conc:
        sampler.reset_peak()
        r = await run_json(c, conc, a.duration, a.warmup, a.body_kb, proc)
        r["proxy_rss_peak_mb"] = round(sampler.peak, 1) if sampler.peak else None
        res["phases"][f"json_c{conc}"] = r
        sent += r["n"]
        log(
            a,
            f"json c={conc}: {r['rps']} rps p50={r['p50_ms']}ms p99={r['p99_ms']}ms err={r['errors']}",
        )
    for conc in a.stream_conc:
        sampler.reset_peak()
        r = await run_stream(
            c, conc, a.duration, a.warmup, a.body_kb, a.stream_events, a.stream_delay_ms, proc
        )
        r["proxy_rss_peak_mb"] = round(sampler.peak, 1) if sampler.peak else None
        res["phases"][f"stream_c{conc}"] = r
        sent += r["n"]
        log(
            a,
            f"stream c={conc}: ttfe p50={r['ttfe_p50_ms']}ms p99={r['ttfe_p99_ms']}ms "
            f"total p50={r['total_p50_ms']}ms err={r['errors']}",
        )
    if a.hold_streams:
        sampler.reset_peak()
        r = await run_hold(c, a.hold_streams, a.hold_secs, a.body_kb, proc, sampler)
        res["phases"]["hold"] = r
        sent += r["ok"]
        log(
            a,
            f"hold {a.hold_streams}x{a.hold_secs}s: ok={r['ok']} max_open={r['max_open']} "
            f"err={r['errors']} rss_peak={r['proxy_rss_peak_mb']}MB",
        )
    await sampler.stop()
    res["rss_end_mb"] = round(proc.rss_mb(), 1) if a.pid and proc.rss_mb() else None
    async with c.session(2) as s1:
        res["upstream"] = summarize_upstream(await upstream_stats(s1, a.upstream), sent)
    res["elapsed_s"] = round(now() - t_start, 1)
    log(a, f"checks={res['checks']} upstream={res['upstream']} elapsed={res['elapsed_s']}s")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    else:
        print(json.dumps(res, indent=1))


async def cmd_check(a):
    c = Client(a)
    async with c.session(4) as s:
        await upstream_reset(s, a.upstream)
        r = await checks(c, a, s)
        r["upstream"] = summarize_upstream(await upstream_stats(s, a.upstream), 4)
    print(json.dumps(r, indent=1))


def log(a, msg):
    print(f"[{a.label}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- table
def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def cmd_table(a):
    runs = []
    for p in a.files:
        with open(p) as f:
            runs.append(json.load(f))
    base = runs[0]

    def get(r, path):
        cur = r
        for k in path:
            if not isinstance(cur, dict) or k not in cur:
                return None
            cur = cur[k]
        return cur

    rows = []  # (label, path, mode) mode: ratio | delta | plain | errs
    for ph, conc in [(p, p.split("_c")[1]) for p in base["phases"] if p.startswith("json_c")]:
        rows += [
            (f"json c={conc} p50 ms", ("phases", ph, "p50_ms"), "ratio"),
            (f"json c={conc} p99 ms", ("phases", ph, "p99_ms"), "ratio"),
            (f"json c={conc} req/s", ("phases", ph, "rps"), "ratio"),
            (f"json c={conc} errors", ("phases", ph, "errors"), "errs"),
            (f"json c={conc} proxy CPU ms/req", ("phases", ph, "proxy_cpu_ms_per_req"), "plain"),
        ]
    for ph, conc in [(p, p.split("_c")[1]) for p in base["phases"] if p.startswith("stream_c")]:
        rows += [
            (f"stream c={conc} TTFE p50 ms", ("phases", ph, "ttfe_p50_ms"), "delta"),
            (f"stream c={conc} TTFE p99 ms", ("phases", ph, "ttfe_p99_ms"), "delta"),
            (f"stream c={conc} total p50 ms", ("phases", ph, "total_p50_ms"), "delta"),
            (f"stream c={conc} streams/s", ("phases", ph, "streams_per_s"), "ratio"),
            (f"stream c={conc} errors", ("phases", ph, "errors"), "errs"),
        ]
    if "hold" in base["phases"]:
        n = base["phases"]["hold"]["streams"]
        s = base["phases"]["hold"]["target_secs"]
        rows += [
            (f"hold {n}x{s}s: ok", ("phases", "hold", "ok"), "plain"),
            (f"hold: max open at once", ("phases", "hold", "max_open"), "plain"),
            (f"hold: errors", ("phases", "hold", "errors"), "errs"),
            (f"hold: all open after ms", ("phases", "hold", "all_open_after_ms"), "plain"),
            (f"hold: TTFE p99 ms", ("phases", "hold", "ttfe_p99_ms"), "delta"),
            (f"hold: proxy CPU s", ("phases", "hold", "proxy_cpu_s"), "plain"),
        ]
    rows += [
        ("proxy RSS idle MB", ("rss_idle_mb",), "plain"),
        ("proxy RSS peak (hold) MB", ("phases", "hold", "proxy_rss_peak_mb"), "plain"),
        ("proxy RSS end MB", ("rss_end_mb",), "plain"),
        ("real key reached upstream", ("upstream", "real_key_ok"), "plain"),
        ("wrong key reached upstream", ("upstream", "real_key_bad"), "plain"),
        ("Authorization hdr leaked upstream", ("upstream", "authorization_forwarded"), "plain"),
        ("anthropic-beta forwarded %", ("upstream", "anthropic_beta_forwarded_pct"), "plain"),
        ("anthropic-beta byte-identical %", ("upstream", "anthropic_beta_exact_pct"), "plain"),
        ("session-id hdr forwarded %", ("upstream", "session_id_forwarded_pct"), "plain"),
        ("anthropic-version forwarded %", ("upstream", "anthropic_version_forwarded_pct"), "plain"),
        ("count_tokens ok", ("checks", "count_tokens_ok"), "plain"),
        ("bad client key -> status", ("checks", "bad_client_key_status"), "plain"),
        ("run elapsed s", ("elapsed_s",), "plain"),
    ]

    header = ["metric"] + [r["label"] for r in runs]
    table = []
    for label, path, mode in rows:
        line = [label]
        b = get(base, path)
        for i, r in enumerate(runs):
            v = get(r, path)
            if mode == "errs":
                cell = "0" if not v else ",".join(f"{k}:{n}" for k, n in v.items())
            elif i == 0 or mode == "plain" or v is None or b in (None, 0):
                cell = fmt(v)
            elif mode == "ratio":
                cell = f"{fmt(v)} ({v / b:.2f}x)"
            else:  # delta
                cell = f"{fmt(v)} (+{v - b:.2f})" if v >= b else f"{fmt(v)} ({v - b:.2f})"
            line.append(cell)
        table.append(line)
    widths = [max(len(str(x[i])) for x in [header] + table) for i in range(len(header))]
    if a.markdown:
        print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for ln in table:
            print("| " + " | ".join(str(x).ljust(w) for x, w in zip(ln, widths)) + " |")
    else:
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        print("  ".join("-" * w for w in widths))
        for ln in table:
            print("  ".join(str(x).ljust(w) for x, w in zip(ln, widths)))
    print(f"\nratios (x) and deltas (+ms) are vs '{base['label']}'.")


def ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "check"):
        r = sub.add_parser(name)
        r.add_argument(
            "--url", required=True, help="base URL a client would use as ANTHROPIC_BASE_URL"
        )
        r.add_argument(
            "--upstream",
            default=os.environ.get("FAKE_UPSTREAM_URL"),
            help="fake upstream base URL, for /_stats checks",
        )
        r.add_argument("--key", default="sk-ant-dummy-sandbox-key", help="key the client sends")
        r.add_argument(
            "--auth",
            choices=("x-api-key", "bearer"),
            default="x-api-key",
            help="send the key as x-api-key (ANTHROPIC_API_KEY) or Bearer (ANTHROPIC_AUTH_TOKEN)",
        )
        r.add_argument("--label", default="target")
        if name == "run":
            r.add_argument("--pid", type=int, default=0, help="proxy pid for RSS/CPU (0 = none)")
            r.add_argument("--out", help="write JSON results here")
            r.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase")
            r.add_argument("--warmup", type=float, default=0.5, help="seconds of warmup per phase")
            r.add_argument("--json-conc", type=ints, default=[1, 16, 64])
            r.add_argument("--stream-conc", type=ints, default=[1, 64])
            r.add_argument("--stream-events", type=int, default=20)
            r.add_argument("--stream-delay-ms", type=float, default=5.0)
            r.add_argument("--hold-streams", type=int, default=500)
            r.add_argument("--hold-secs", type=float, default=10.0)
            r.add_argument("--body-kb", type=int, default=16, help="request body size (KiB)")
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    t.add_argument("--markdown", action="store_true")
    a = p.parse_args()
    if a.cmd == "table":
        return cmd_table(a)
    for u in (a.url, a.upstream or ""):
        if u and not any(h in u for h in ("//127.0.0.1", "//localhost", "//[::1]")):
            sys.exit(f"refusing non-loopback URL {u}")
    try:
        import uvloop  # type: ignore

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(cmd_run(a) if a.cmd == "run" else cmd_check(a))


if __name__ == "__main__":
    main()
