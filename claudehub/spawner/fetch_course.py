"""Init-container entry point: fetch the chosen course into the sandbox's course folder.

``python -m claudehub.spawner.fetch_course`` runs in the sandbox pod's init container (see
``ClaudeSpawner.course_fetch_command``) with this environment, set by the spawner:

- ``CLAUDEHUB_PROGRESS_URL``: base URL of the course+progress service API;
- ``CLAUDEHUB_COURSE_ID``: the course the user picked;
- ``CLAUDEHUB_COURSE_DIR``: where to unpack it (on the volume the sandbox sees read-only);
- ``JUPYTERHUB_API_TOKEN``: the server's hub token, which the service accepts.

Exit status 0 on success; 1 with a one-line reason on stderr otherwise (the kubelet keeps
it as the container's termination message, which the spawner shows the user).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from claudehub.contract import env
from claudehub.contract.course_client import ProgressAPIError, fetch_course_bundle


def main() -> int:
    """Fetch the course bundle; return the process exit status."""
    # A command-line tool's own argument parsing (allowed in tests/test_contract.py): the
    # init container's arguments are its environment, set by the spawner.
    try:
        url = os.environ[env.PROGRESS_URL]
        course = os.environ[env.COURSE_ID]
        dest = Path(os.environ[env.COURSE_DIR])
        token = os.environ.get(env.HUB_API_TOKEN, "")
    except KeyError as e:
        print(f"fetch-course: {e.args[0]} is not set", file=sys.stderr)
        return 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(fetch_course_bundle(url, token, course, dest))
    except (OSError, ValueError, ProgressAPIError) as e:
        message = f"could not fetch course {course!r}: {e}"
        print(f"fetch-course: {message}", file=sys.stderr)
        # The kubelet mounts this file in a pod and shows its text as the container's
        # termination message; outside a pod it does not exist and is not created.
        log = Path("/dev/termination-log")
        if log.is_file():
            try:
                log.write_text(message)
            except OSError:
                pass
        return 1
    print(f"fetch-course: course {course!r} is in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
