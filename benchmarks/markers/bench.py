"""Throughput of the tutor-marker stripper on terminal-like output (4 KiB chunks, 10 MB).

Run: .venv/bin/python benchmarks/markers/bench.py
"""

from __future__ import annotations

import time

from claudehub.server_ext.markers import MarkerStripper

CASES = {
    "plain text": "Plain output line without brackets or escapes, just words and more words\r\n",
    "ANSI colours + [brackets]": (
        "\x1b[38;5;174m●\x1b[39m Here is some [Settings] with \x1b[1mbold\x1b[22m "
        "and a list: [1, 2, 3]\r\n"
    ),
    "a marker on every line (worst case)": "\x1b[2K\x1b[1A Stage [STAGE_COMPLETE:1] [See]\r\n",
}


def main() -> None:
    for name, unit in CASES.items():
        data = unit * (10_000_000 // len(unit))
        stripper = MarkerStripper()
        start = time.perf_counter()
        for i in range(0, len(data), 4096):
            stripper.feed(data[i : i + 4096])
        elapsed = time.perf_counter() - start
        print(f"{name:40s} {len(data) / elapsed / 1e6:8.1f} MB/s")


if __name__ == "__main__":
    main()
