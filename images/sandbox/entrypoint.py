"""Sandbox entrypoint (runs under tini): reset SIGINT, then exec the single-user server.

A process started with SIGINT ignored (as a shell does for background jobs) passes that on
through exec, and every terminal the server opens would inherit it: Ctrl-C would then do
nothing in Claude. Restoring the default here keeps it working whatever started us.

Arguments are the command to run (ClaudeSpawner passes ``claudehub-singleuser ...``, the
stock single-user server with lean imports); with none, or with options only,
``claudehub-singleuser`` is run with them.
"""

import os
import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_DFL)
args = sys.argv[1:]
if not args or args[0].startswith("-"):
    args = ["claudehub-singleuser", *args]
os.execvp(args[0], args)
