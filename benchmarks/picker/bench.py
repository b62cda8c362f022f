"""Issue 15's picker budget: server time of the course picker, and the bytes of its first load.

Starts local mode's whole stack (`make run`'s hub, proxy, key proxy and course service) with
a catalogue folder given on the command line (e.g. a checkout of the public catalogue, 46
courses), signs a learner in and:

- requests ``GET /hub/spawn`` (the picker: the course list and the learner's progress from
  the course service, then the cards) ``--rounds`` times after ``--warmup`` requests, and
  reads each request's *server* time from the hub's own request log line
  (``200 GET /hub/spawn (learner@127.0.0.1) 41.27ms``), reporting median, p90 and max;
- loads the picker once in Chromium with an empty cache and adds up what the page fetched
  (HTML, CSS, JavaScript, images; bytes on the wire and decoded), the thumbnails included.

Usage::

    .venv/bin/python benchmarks/picker/bench.py /work/catalogue --rounds 30

Exit status 1 when the median server time is over ``--target`` milliseconds (300).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import start_local_stack, stop_local_stack  # noqa: E402
from tests.fakes.upstream import FakeAnthropic  # noqa: E402
from tests.helpers import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

USER = "bench-learner"
LOG_LINE = re.compile(r"\b200 GET /hub/spawn \(" + re.escape(USER) + r"@[^)]*\) ([0-9.]+)ms")


def sign_in(url: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=30)
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")
    r = session.post(
        f"{url}/hub/login",
        data={"username": USER, "password": password, "_xsrf": xsrf},
        timeout=30,
    )
    r.raise_for_status()
    return session


def server_times(log: Path, skip: int) -> list[float]:
    found = [float(m.group(1)) for m in LOG_LINE.finditer(log.read_text(errors="replace"))]
    return found[skip:]


def first_load(url: str, password: str) -> tuple[dict[str, list[int]], int, list[int]]:
    """Bytes the picker page fetches with an empty cache, by kind: [wire, decoded, count],
    the number of cards, and each image's decoded size."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    images: list[int] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/hub/login")
            page.fill("#username_input", USER)
            page.fill("#password_input", password)
            page.click("#login_submit")
            page.wait_for_url("**/hub/home**")
            responses = []
            page.on("requestfinished", lambda req: responses.append(req))
            page.goto(f"{url}/hub/spawn", wait_until="networkidle")
            cards = page.locator("#claudehub-cards > li").count()
            for req in responses:
                kind = {"document": "html", "stylesheet": "css", "script": "js"}.get(
                    req.resource_type, req.resource_type
                )
                resp = req.response()
                try:
                    body = len(resp.body()) if resp is not None else 0
                except PlaywrightError:  # a redirect has no body to read
                    body = 0
                wire = req.sizes()["responseBodySize"] + req.sizes()["responseHeadersSize"]
                if kind == "image":
                    images.append(body)
                entry = totals[kind]
                entry[0] += wire
                entry[1] += body
                entry[2] += 1
        finally:
            browser.close()
    return dict(totals), cards, images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("catalogue", type=Path, help="folder of papers (catalogue layout)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--target", type=float, default=300.0, help="ms, median server time")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic() as upstream:
        catalog = Path(tmp) / "catalog.json"
        catalog.write_text(
            json.dumps({"catalogues": [{"id": "papers", "repo": str(args.catalogue.resolve())}]})
        )
        stack = start_local_stack(
            Path(tmp), upstream, extra_env={"CLAUDEHUB_CATALOG": str(catalog)}
        )
        try:
            session = sign_in(stack.url, stack.password)
            walls = []
            for i in range(args.warmup + args.rounds):
                start = time.perf_counter()
                r = session.get(f"{stack.url}/hub/spawn", timeout=60)
                r.raise_for_status()
                if i >= args.warmup:
                    walls.append((time.perf_counter() - start) * 1000)
            html_bytes = len(r.content)
            time.sleep(0.5)  # the log line is written after the response
            times = server_times(stack.log, args.warmup)
            bytes_by_kind, cards, images = first_load(stack.url, stack.password)
        finally:
            stop_local_stack(stack)

    if len(times) < args.rounds:
        print(f"only {len(times)} request log lines found", file=sys.stderr)
        return 1
    times.sort()
    median = statistics.median(times)
    print(f"courses on the picker: {cards}")
    print(
        f"GET /hub/spawn server time over {len(times)} requests: median {median:.1f} ms, "
        f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, max {times[-1]:.1f} ms "
        f"(client wall median {statistics.median(walls):.1f} ms)"
    )
    print(f"picker HTML: {html_bytes} bytes")
    wire = decoded = 0
    for kind, (w, d, n) in sorted(bytes_by_kind.items()):
        print(f"first load {kind:>6}: {n:3d} responses, {w:8d} bytes on the wire, {d:8d} decoded")
        wire += w
        decoded += d
    print(f"first load total: {wire} bytes on the wire, {decoded} decoded")
    if images:
        print(
            f"thumbnails fetched: {len(images)} (of {cards} cards; the rest wait for scrolling), "
            f"median {statistics.median(images):.0f} bytes, largest {max(images)} bytes"
        )
    return 0 if median <= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
