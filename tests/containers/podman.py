"""A small, strict wrapper around the podman CLI for the container test tier.

Every object a test creates (containers, pods, volumes, networks) gets a name with the
run's own prefix and is removed by that exact name when the test is done: other runs on
the machine may hold containers, so nothing is ever removed by wildcard.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "podman" / "containers.conf"
SANDBOX_IMAGE = "localhost/claudehub/sandbox:dev"
HUB_IMAGE = "localhost/claudehub/hub:dev"


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its command line and stderr."""


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman(*args: str, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    """Run ``podman ARGS`` and return its stdout."""
    exe = shutil.which("podman")
    if exe is None:
        raise PodmanError("podman is not installed: `make podman` installs it")
    proc = subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=podman_env(),
        input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PodmanError(
            f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc.stdout


@dataclass
class Exec:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Podman:
    """The objects of one test run, each removed by name on :meth:`cleanup`."""

    prefix: str = field(default_factory=lambda: f"chtest-{uuid.uuid4().hex[:8]}")
    containers: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def name(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    def network(self, what: str, *, internal: bool = False) -> str:
        name = self.name(what)
        args = ["network", "create"]
        if internal:
            args.append("--internal")
        podman(*args, name)
        self.networks.append(name)
        return name

    def volume(self, name: str) -> str:
        """Create ``name`` unless it exists (a PVC's volume outlives its pods)."""
        if self._exists("volume", name):
            return name
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def _exists(self, kind: str, name: str) -> bool:
        exe = shutil.which("podman") or "podman"
        return (
            subprocess.run(
                [exe, kind, "exists", name], env=podman_env(), capture_output=True, check=False
            ).returncode
            == 0
        )

    def run(self, *args: str, name: str, timeout: float = 120) -> str:
        """``podman run --name NAME ARGS``; the container is tracked for removal."""
        self.containers.append(name)
        return podman("run", "--name", name, *args, timeout=timeout).strip()

    def exec(self, container: str, argv: Sequence[str], *, user: str | None = None) -> Exec:
        exe = shutil.which("podman") or "podman"
        cmd = [exe, "exec"]
        if user:
            cmd += ["--user", user]
        proc = subprocess.run(
            [*cmd, container, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=podman_env(),
            check=False,
        )
        return Exec(proc.returncode, proc.stdout, proc.stderr)

    def inspect(self, name: str) -> dict[str, Any]:
        data = json.loads(podman("container", "inspect", name))
        assert isinstance(data, list) and data
        return dict(data[0])

    def logs(self, name: str) -> str:
        exe = shutil.which("podman") or "podman"
        proc = subprocess.run(
            [exe, "logs", name],
            capture_output=True,
            text=True,
            timeout=30,
            env=podman_env(),
            check=False,
        )
        return proc.stdout + proc.stderr

    def ip(self, container: str, network: str) -> str:
        nets = self.inspect(container)["NetworkSettings"]["Networks"]
        return str(nets[network]["IPAddress"])

    def gateway(self, network: str) -> str:
        data = json.loads(podman("network", "inspect", network))
        return str(data[0]["subnets"][0]["gateway"])

    def remove_container(self, name: str) -> None:
        podman("rm", "-f", "-t", "2", name, check=False, timeout=60)

    def cleanup(self) -> None:
        for name in reversed(self.containers):
            self.remove_container(name)
        for name in reversed(self.pods):
            podman("pod", "rm", "-f", "-t", "2", name, check=False, timeout=60)
        for name in reversed(self.volumes):
            podman("volume", "rm", "-f", name, check=False)
        for name in reversed(self.networks):
            podman("network", "rm", "-f", name, check=False)
