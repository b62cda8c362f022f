"""Local mode with every single-user server run under ``py-spy record`` (on-CPU samples only).

    .venv/bin/python benchmarks/load/bench.py --users 3 --hub-config benchmarks/load/profile_config.py

writes one flame graph per server to $CLAUDEHUB_PROFILE_DIR (default /tmp/claudehub-profiles).
"""

import os
from pathlib import Path

c = get_config()  # type: ignore[name-defined]  # noqa: F821
load_subconfig(str(Path(__file__).resolve().parents[2] / "hub_config" / "local_config.py"))  # type: ignore[name-defined]  # noqa: F821

out = Path(os.environ.get("CLAUDEHUB_PROFILE_DIR", "/tmp/claudehub-profiles"))
out.mkdir(parents=True, exist_ok=True)
from claudehub.spawner.local import LocalSandboxSpawner  # noqa: E402

cmd = LocalSandboxSpawner().cmd
# the spawner's cmd is not formatted per user: a shell names the output after the user
c.LocalSandboxSpawner.cmd = [
    "/bin/sh",
    "-c",
    f'exec "{Path(cmd[0]).parent / "py-spy"}" record --format raw --rate 250'
    f' -o "{out}/$JUPYTERHUB_USER.txt" -- "$@"',
    "sh",
    *cmd,
]
