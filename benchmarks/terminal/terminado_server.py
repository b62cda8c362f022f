#!/usr/bin/env python3
"""Plain terminado reference server (terminado's own example pattern).

A tornado Application with terminado.TermSocket at /websocket, backed by
UniqueTermManager (one new pty per websocket connection; the pattern of
terminado's demos/unique.py) or SingleTermManager (one shared pty; the
pattern of demos/single.py).  Only binds 127.0.0.1.

    python terminado_server.py --port 18765 -- bash --norc --noprofile -i
"""

import argparse
import asyncio
import logging
import os
import signal

import tornado.web
from terminado import SingleTermManager, TermSocket, UniqueTermManager


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--manager", choices=["unique", "single"], default="unique")
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("command", nargs="+", help="command run in each pty (after --)")
    args = ap.parse_args()
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))

    if args.manager == "unique":
        tm = UniqueTermManager(shell_command=args.command)
    else:
        tm = SingleTermManager(shell_command=args.command)

    app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": tm})])

    async def run() -> None:
        app.listen(args.port, args.host)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"terminado ({args.manager}) listening on ws://{args.host}:{args.port}/websocket pid={os.getpid()}",
            flush=True,
        )
        await stop.wait()
        await tm.shutdown()

    asyncio.run(run())


if __name__ == "__main__":
    main()
