"""A fake Anthropic Messages API for tests: real HTTP, scripted replies, recorded requests.

It runs an aiohttp server on 127.0.0.1 in a background thread with its own event loop, so
sync tests, async tests and subprocesses (the Claude Code CLI, the Anthropic SDK) can all use
it. It speaks enough of the Messages API for real clients: JSON and SSE streaming replies
with text or ``tool_use`` blocks, ``count_tokens``, and Anthropic-style errors.

Scripted replies are consumed only by "agent" requests (those that offer ``tools``), because
Claude Code also sends side requests (titles, topic checks) that must not eat a script entry.

Run standalone: ``python -m tests.fakes.upstream --port 18080 [--require-key KEY]``; in a
container (another process scripts and reads it): ``--host 0.0.0.0`` to listen on every
address, ``--script FILE`` for the replies (a JSON list, each a text or a list of content
blocks), ``--serve-recorded`` to answer ``GET /_recorded`` with the recorded requests as JSON
(:meth:`RecordedRequest.to_json`; that request itself is not recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_REPLY = "Hello from the fake upstream."
Reply = str | list[dict[str, Any]]


@dataclass
class RecordedRequest:
    """One request as the fake upstream received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes

    @property
    def credential(self) -> str | None:
        """The credential the client presented (x-api-key, else a Bearer token)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        return None

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools the client offered the model in this request."""
        if not self.body:
            return []
        return [t.get("name", "") for t in self.body.get("tools") or []]

    def tool_results(self) -> list[dict[str, Any]]:
        """All ``tool_result`` blocks in the request's last user message."""
        if not self.body or not self.body.get("messages"):
            return []
        last = self.body["messages"][-1]
        content = last.get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]

    def to_json(self) -> dict[str, Any]:
        """The request as JSON (``raw`` base64-encoded); :meth:`from_json` reads it back."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "raw": base64.b64encode(self.raw).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedRequest:
        return cls(
            method=data["method"],
            path=data["path"],
            query=data["query"],
            headers=dict(data["headers"]),
            body=data["body"],
            raw=base64.b64decode(data["raw"]),
        )


@dataclass
class FakeAnthropic:
    """Scripted fake of api.anthropic.com. Use as a context manager or call start()/stop()."""

    require_key: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    #: Address to listen on (``0.0.0.0`` in a container others reach by name).
    host: str = "127.0.0.1"
    #: Answer ``GET /_recorded`` with the recorded requests (for a fake in another process).
    serve_recorded: bool = False
    delay_between_events: float = 0.0
    _script: list[Reply] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    # -- control -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next agent requests (text, or a list of content blocks)."""
        with self._lock:
            self._script.extend(replies)

    def clear_script(self) -> None:
        """Forget the queued replies not used yet (a drill's spare ones)."""
        with self._lock:
            self._script.clear()

    def keys_seen(self) -> set[str]:
        """Every credential any request presented."""
        return {r.credential for r in self.requests if r.credential is not None}

    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    def agent_requests(self) -> list[RecordedRequest]:
        """Message requests that offered tools (Claude Code's main loop)."""
        return [r for r in self.message_requests() if r.tool_names]

    def start(self, port: int = 0) -> FakeAnthropic:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._runner = web.AppRunner(self._app(), access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, port)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- server --------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        if self.serve_recorded:
            app.router.add_get("/_recorded", self._recorded)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if body.get("tools") and self._script:
                return self._script.pop(0)
        return DEFAULT_REPLY

    async def _recorded(self, request: web.Request) -> web.Response:
        return web.json_response([r.to_json() for r in list(self.requests)])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: dict[str, Any] | None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body if isinstance(body, dict) else None,
            raw=raw,
        )
        self.requests.append(rec)

        if self.require_key is not None and rec.credential != self.require_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if request.method != "POST" or request.path not in (
            "/v1/messages",
            "/v1/messages/count_tokens",
        ):
            return _error(404, "not_found_error", f"Not found: {request.path}")
        if rec.body is None:
            return _error(400, "invalid_request_error", "body must be a JSON object")
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": _count(rec.body)})

        reply = self._next_reply(rec.body)
        blocks = self._blocks(reply)
        message = {
            "id": f"msg_fake{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": rec.body.get("model", "claude-fake"),
            "content": blocks,
            "stop_reason": "tool_use"
            if any(b["type"] == "tool_use" for b in blocks)
            else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": _count(rec.body),
                "output_tokens": sum(len(json.dumps(b)) // 4 + 1 for b in blocks),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        if not rec.body.get("stream"):
            return web.json_response(message, headers={"request-id": "req_fake"})
        return await self._stream(request, message)

    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        if isinstance(reply, str):
            return [{"type": "text", "text": reply}]
        blocks = []
        for block in reply:
            block = dict(block)
            if block.get("type") == "tool_use":
                block.setdefault("id", f"toolu_fake{next(self._ids):06d}")
                block.setdefault("input", {})
            blocks.append(block)
        return blocks

    async def _stream(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            if self.delay_between_events:
                await asyncio.sleep(self.delay_between_events)

        usage = message["usage"]
        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        await send("message_start", {"type": "message_start", "message": start})
        for i, block in enumerate(message["content"]):
            if block["type"] == "text":
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                text = block["text"]
                for j in range(0, len(text), 16):
                    await send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": text[j : j + 16]},
                        },
                    )
            else:
                head = dict(block, input={})
                await send(
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": head},
                )
                await send(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(block["input"]),
                        },
                    },
                )
            await send("content_block_stop", {"type": "content_block_stop", "index": i})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp


def _count(body: dict[str, Any]) -> int:
    return max(1, len(json.dumps(body.get("messages", []))) // 4)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status=status
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--require-key", default=None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--script", default=None, help="JSON file: a list of replies to queue (see script())"
    )
    parser.add_argument(
        "--serve-recorded", action="store_true", help="answer GET /_recorded (requests as JSON)"
    )
    args = parser.parse_args()
    fake = FakeAnthropic(
        require_key=args.require_key, host=args.host, serve_recorded=args.serve_recorded
    )
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            replies = json.load(f)
        if not isinstance(replies, list):
            parser.error("--script: the file must hold a JSON list of replies")
        fake.script(*replies)
    fake.start(args.port)
    print(f"fake Anthropic upstream on {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
