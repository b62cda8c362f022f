"""First spawn on a node with and without the sandbox image (what the pre-puller saves).

A node is a podman image store of its own (``--root``/``--runroot`` under a temporary
folder), so the image really is absent from it: nothing in the machine's own store
(``localhost/claudehub/sandbox:dev``, which other tests use) is removed or retagged. The
registry is Debian's ``docker-registry`` on 127.0.0.1:5000 holding the sandbox image:

    apt-get install docker-registry
    docker-registry serve config.yml        # http.addr 127.0.0.1:5000, storage in /tmp
    podman push --tls-verify=false localhost/claudehub/sandbox:dev \\
        127.0.0.1:5000/claudehub/sandbox:dev
    .venv/bin/python -m benchmarks.prepull.bench [--rounds 5]

Each round, alternating which case goes first, times on a fresh store:

* absent: ``podman pull`` of the image from the registry, then ``podman run`` of the
  sandbox's server process up to the server module imported
  (``python -c "import claudehub.server_ext.singleuser"``, the work before it listens);
* present: the same ``podman run`` on a store that already holds the image.

It prints the median of each and the JSON of every round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "podman" / "containers.conf"
IMAGE = "127.0.0.1:5000/claudehub/sandbox:dev"
SERVER = [
    "--entrypoint",
    "/opt/claudehub/bin/python",
    IMAGE,
    "-c",
    "import claudehub.server_ext.singleuser",
]


def podman(store: Path, *args: str) -> float:
    """Run podman against the node's own store; seconds it took."""
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    cmd = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), *args]
    start = time.monotonic()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.monotonic() - start


def pull(store: Path) -> float:
    return podman(store, "pull", "--quiet", "--tls-verify=false", IMAGE)


def run_server(store: Path) -> float:
    return podman(store, "run", "--rm", "--network=none", *SERVER)


def reset(store: Path) -> None:
    podman(store, "system", "reset", "--force")
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="chbench-prepull-"))
    store = base / "node"
    store.mkdir()
    rounds = []
    try:
        for i in range(args.rounds):
            order = ("absent", "present") if i % 2 == 0 else ("present", "absent")
            result: dict[str, float] = {}
            for case in order:
                reset(store)
                if case == "present":
                    pull(store)  # the pre-puller's work, done before the class
                    result["present_run_s"] = run_server(store)
                else:
                    result["absent_pull_s"] = pull(store)
                    result["absent_run_s"] = run_server(store)
            result["absent_total_s"] = result["absent_pull_s"] + result["absent_run_s"]
            rounds.append(result)
            print(json.dumps(result), flush=True)
    finally:
        reset(store)
        shutil.rmtree(base, ignore_errors=True)
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(json.dumps({"rounds": len(rounds), "median": median}, indent=2))


if __name__ == "__main__":
    main()
