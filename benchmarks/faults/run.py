"""The fault matrix, repeated: each fault injected N times into one running stack; medians.

The stack and the drills are the container tier's (tests/containers/faults.py): the chart's
Deployments as podman pods, the key proxy at two replicas on a PostgreSQL container, one
learner on the Claude page in Chromium, each fault injected while an answer streams (the
fake upstream sends an event every 0.25 s). Needs `make images`. Run from the repository:

    PATH=$PWD/node_modules/.bin:$PWD/.venv/bin:$PATH \\
        .venv/bin/python -m benchmarks.faults.run [--rounds 3] [--only hub,chp]

For each fault it prints what the learner saw, the median seconds from the fault until the
part answered again (``back_s``: the restarted container ready by its probe and, for the
hub, seeing the sandbox again; for CHP, the page connected again; for DNS, the first answer
after DNS returned) and of those from the kubelet's restart on (``restart_s``: the hub, CHP
and key proxies are restarted at once; PostgreSQL and the course service stay down while the
learner asks a question), and what was lost; each round's JSON first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.containers import faults
from tests.containers.test_kubernetes_mode import open_claude
from tests.helpers import CHROMIUM, CHROMIUM_ARGS

DRILLS = (
    "hub",
    "chp",
    "hub-and-chp",
    "keyproxy-one",
    "keyproxy-both",
    "postgres",
    "progress",
    "dns",
)


def run_drill(name: str, stack: faults.Stack, page: Any, tag: str) -> dict[str, Any]:
    if name == "hub":
        return faults.drill_hub(stack, page, tag)
    if name == "chp":
        return faults.drill_chp(stack, page, tag)
    if name == "hub-and-chp":
        return faults.drill_hub_and_chp(stack, page, tag)
    if name == "keyproxy-one":
        return faults.drill_keyproxy(stack, page, tag, both=False)
    if name == "keyproxy-both":
        return faults.drill_keyproxy(stack, page, tag, both=True)
    if name == "postgres":
        return faults.drill_postgres(stack, page, tag)
    if name == "progress":
        return faults.drill_progress(stack, page, tag)
    sandbox = stack.cluster.node.by_name(f"claudehub-{faults.LEARNER}")
    assert sandbox is not None
    return faults.drill_dns(stack, page, tag, sandbox)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(DRILLS), help="comma-separated drills")
    args = parser.parse_args()
    chosen = [d for d in args.only.split(",") if d]
    unknown = sorted(set(chosen) - set(DRILLS))
    if unknown:
        parser.error(f"unknown drill(s) {unknown}; choose from {', '.join(DRILLS)}")

    from playwright.sync_api import sync_playwright

    rounds: dict[str, list[dict[str, Any]]] = {d: [] for d in chosen}
    with tempfile.TemporaryDirectory() as folder, faults.fault_stack(Path(folder)) as stack:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = open_claude(stack, chromium, faults.LEARNER)
            for i in range(args.rounds):
                for name in chosen:
                    page.wait_for_function(
                        "() => document.getElementById('status')?.textContent === 'connected'",
                        timeout=120_000,
                    )
                    started = time.monotonic()
                    outcome = run_drill(name, stack, page, f"R{i}{name.replace('-', '')}")
                    outcome["drill_s"] = round(time.monotonic() - started, 2)
                    for key in ("back_s", "restart_s", "written_s"):
                        if key in outcome:
                            outcome[key] = round(outcome[key], 2)
                    rounds[name].append(outcome)
                    print(json.dumps({"drill": name, "round": i, **outcome}), flush=True)
            chromium.close()
    print("\nfault | learner sees | median s fault -> back | median s restart -> back | lost")
    for name, outcomes in rounds.items():
        back = statistics.median(o["back_s"] for o in outcomes)
        restart = statistics.median(o["restart_s"] for o in outcomes)
        seen = sorted({o["seen"] for o in outcomes})
        print(f"{name} | {' / '.join(seen)} | {back:.1f} | {restart:.1f} | {outcomes[0]['lost']}")


if __name__ == "__main__":
    main()
