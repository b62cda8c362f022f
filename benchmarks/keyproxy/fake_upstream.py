#!/usr/bin/env python3
# ruff: noqa
# Copied from the shared reference harness (../shared/bench/keyproxy); keep in sync.
"""Fast fake Anthropic Messages API for proxy benchmarks (loopback only).

Endpoints
  POST /v1/messages               JSON, or SSE when the body has "stream": true
  POST /v1/messages/count_tokens  {"input_tokens": N}
  GET  /v1/models                 small model list (Claude Code model discovery)
  GET  /_stats                    what the upstream saw (keys, headers, counts)
  POST /_reset                    zero the stats
  GET  /healthz

Streaming shape (same event order as the real API):
  message_start, content_block_start, ping, N x content_block_delta,
  content_block_stop, message_delta (with usage), message_stop

Per-request knobs (header wins over body, body wins over CLI default):
  header x-fake-events / x-fake-delay-ms / x-fake-first-delay-ms / x-fake-sleep-ms
  body   {"_fake": {"events": N, "delay_ms": D, "first_delay_ms": F, "sleep_ms": S}}
  events         number of content_block_delta events
  delay_ms       pause between delta events
  first_delay_ms pause before the response headers/message_start (simulated TTFT)
  sleep_ms       pause before a non-streaming JSON response

Key checking: with --require-key K, any request whose x-api-key is not K gets
the real API's 401 authentication_error shape. /_stats counts every x-api-key
and Authorization value seen (values are reported as a short fingerprint plus
whether they matched K, never in full unless --show-keys).

Stdlib only (uses uvloop when importable). Python >= 3.9.
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import time

STATS = {}


def reset_stats():
    STATS.clear()
    STATS.update(
        started=time.time(),
        requests=0,
        by_path={},
        x_api_key={},
        authorization={},
        real_key_ok=0,
        real_key_bad=0,
        anthropic_version={},
        anthropic_beta={},
        session_id_seen=0,
        streams_open=0,
        streams_open_max=0,
        streams_done=0,
        streams_aborted=0,
        json_done=0,
    )


def fp(value, show):
    if value is None:
        return None
    if show:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12] + f"/len{len(value)}"


def bump(d, k):
    d[k] = d.get(k, 0) + 1


WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua"
).split()


def reason(code):
    return {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Payload Too Large",
    }.get(code, "OK")


def sse(event, obj):
    return f"event: {event}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


def chunk(b):
    return b"%x\r\n%s\r\n" % (len(b), b)


class Upstream:
    def __init__(self, args):
        self.a = args
        self.seq = 0

    # ------------------------------------------------------------------ http
    async def handle_conn(self, reader, writer):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for ln in lines[1:]:
                    if not ln:
                        continue
                    k, _, v = ln.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size_line = await reader.readuntil(b"\r\n")
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            # trailers until blank line
                            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                                pass
                            break
                        parts.append(await reader.readexactly(size))
                        await reader.readexactly(2)
                    body = b"".join(parts)
                else:
                    n = int(headers.get("content-length", "0") or 0)
                    if n:
                        body = await reader.readexactly(n)
                keep = not (
                    headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                )
                keep = await self.route(method, target, headers, body, writer, keep)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def send(self, writer, code, obj, keep, extra=None):
        payload = json.dumps(obj, separators=(",", ":")).encode()
        hdr = [
            f"HTTP/1.1 {code} {reason(code)}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
            f"request-id: req_fake_{self.seq:08d}",
            "connection: " + ("keep-alive" if keep else "close"),
        ]
        for k, v in (extra or {}).items():
            hdr.append(f"{k}: {v}")
        writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        return keep

    def knob(self, headers, fake, hname, bname, default):
        if hname in headers:
            return float(headers[hname])
        if isinstance(fake, dict) and bname in fake:
            return float(fake[bname])
        return float(default)

    async def route(self, method, target, headers, body, writer, keep):
        self.seq += 1
        path = target.split("?", 1)[0]
        if path.startswith("/_") or path == "/healthz":
            if path == "/healthz":
                return await self.send(writer, 200, {"ok": True}, keep)
            if path == "/_stats":
                return await self.send(writer, 200, STATS, keep)
            if path == "/_reset":
                reset_stats()
                return await self.send(writer, 200, {"ok": True}, keep)
            return await self.send(writer, 404, {"error": "not found"}, keep)

        STATS["requests"] += 1
        bump(STATS["by_path"], f"{method} {path}")
        key = headers.get("x-api-key")
        bump(STATS["x_api_key"], fp(key, self.a.show_keys) or "<none>")
        auth = headers.get("authorization")
        bump(STATS["authorization"], fp(auth, self.a.show_keys) or "<none>")
        bump(STATS["anthropic_version"], headers.get("anthropic-version", "<none>"))
        bump(STATS["anthropic_beta"], headers.get("anthropic-beta", "<none>"))
        if "x-claude-code-session-id" in headers:
            STATS["session_id_seen"] += 1

        if self.a.require_key is not None:
            if key == self.a.require_key:
                STATS["real_key_ok"] += 1
            else:
                STATS["real_key_bad"] += 1
                return await self.send(
                    writer,
                    401,
                    {
                        "type": "error",
                        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                    },
                    keep,
                )

        if method == "GET" and path == "/v1/models":
            return await self.send(
                writer,
                200,
                {
                    "data": [
                        {
                            "type": "model",
                            "id": m,
                            "display_name": m,
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                        for m in ("claude-sonnet-4-5", "claude-haiku-4-5")
                    ],
                    "has_more": False,
                    "first_id": None,
                    "last_id": None,
                },
                keep,
            )

        if method != "POST":
            return await self.send(
                writer,
                405,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "method not allowed"},
                },
                keep,
            )

        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return await self.send(
                writer,
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "body is not JSON"},
                },
                keep,
            )
        fake = req.get("_fake") if isinstance(req, dict) else None
        in_tok = max(1, len(body) // 4)

        if path == "/v1/messages/count_tokens":
            return await self.send(writer, 200, {"input_tokens": in_tok}, keep)
        if path != "/v1/messages":
            return await self.send(
                writer,
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"{path} not found"},
                },
                keep,
            )

        model = req.get("model", "claude-fake") if isinstance(req, dict) else "claude-fake"
        n = int(self.knob(headers, fake, "x-fake-events", "events", self.a.events))
        delay = self.knob(headers, fake, "x-fake-delay-ms", "delay_ms", self.a.delay_ms) / 1000
        first = (
            self.knob(
                headers, fake, "x-fake-first-delay-ms", "first_delay_ms", self.a.first_delay_ms
            )
            / 1000
        )
        msg_id = f"msg_fake{self.seq:012d}"

        if not (isinstance(req, dict) and req.get("stream")):
            sleep = self.knob(headers, fake, "x-fake-sleep-ms", "sleep_ms", self.a.sleep_ms) / 1000
            if sleep or first:
                await asyncio.sleep(sleep + first)
            text = " ".join(WORDS[i % len(WORDS)] for i in range(n))
            STATS["json_done"] += 1
            return await self.send(
                writer,
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": in_tok,
                        "output_tokens": n,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                },
                keep,
            )

        # ---- SSE stream (chunked transfer encoding, flushed per event)
        if first:
            await asyncio.sleep(first)
        hdr = [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream; charset=utf-8",
            "cache-control: no-cache",
            "transfer-encoding: chunked",
            f"request-id: req_fake_{self.seq:08d}",
            "connection: " + ("keep-alive" if keep else "close"),
        ]
        STATS["streams_open"] += 1
        STATS["streams_open_max"] = max(STATS["streams_open_max"], STATS["streams_open"])
        ok = False
        try:
            start = sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": model,
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": in_tok,
                            "output_tokens": 1,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                        },
                    },
                },
            )
            start += sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            start += sse("ping", {"type": "ping"})
            writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + chunk(start))
            await writer.drain()
            for i in range(n):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(
                    chunk(
                        sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": 0,
                                "delta": {
                                    "type": "text_delta",
                                    "text": WORDS[i % len(WORDS)] + " ",
                                },
                            },
                        )
                    )
                )
                await writer.drain()
            tail = sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            tail += sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": n},
                },
            )
            tail += sse("message_stop", {"type": "message_stop"})
            writer.write(chunk(tail) + b"0\r\n\r\n")
            await writer.drain()
            ok = True
        finally:
            STATS["streams_open"] -= 1
            STATS["streams_done" if ok else "streams_aborted"] += 1
        return keep


async def main_async(args):
    reset_stats()
    up = Upstream(args)
    server = await asyncio.start_server(
        up.handle_conn, args.host, args.port, backlog=4096, limit=1 << 22
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(s, stop.set)
        except NotImplementedError:
            pass
    print(
        f"fake_upstream listening on http://{args.host}:{args.port} pid={os.getpid()}", flush=True
    )
    async with server:
        await stop.wait()


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--events", type=int, default=20, help="default content_block_delta count")
    p.add_argument("--delay-ms", type=float, default=0.0, help="default pause between deltas")
    p.add_argument(
        "--first-delay-ms", type=float, default=0.0, help="default pause before first byte"
    )
    p.add_argument("--sleep-ms", type=float, default=0.0, help="default pause for JSON responses")
    p.add_argument(
        "--require-key",
        default=os.environ.get("FAKE_UPSTREAM_REQUIRE_KEY"),
        help="reject x-api-key != this with 401 (env FAKE_UPSTREAM_REQUIRE_KEY)",
    )
    p.add_argument("--show-keys", action="store_true", help="report key values in /_stats unhashed")
    p.add_argument("--no-uvloop", action="store_true")
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing to bind a non-loopback address")
    if not args.no_uvloop:
        try:
            import uvloop  # type: ignore

            uvloop.install()
        except ImportError:
            pass
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
