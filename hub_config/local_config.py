"""JupyterHub configuration for claudehub's local mode (`make run`).

All logic lives in claudehub.hub.local; settings come from the environment
(ANTHROPIC_API_KEY, ANTHROPIC_UPSTREAM_URL, CLAUDEHUB_*) or can be set below.
"""

import os
import sys

from traitlets import TraitError

from claudehub.contract import env
from claudehub.hub.local import LocalSettings, banner, configure_local

c = get_config()  # type: ignore[name-defined]  # noqa: F821

try:
    settings = LocalSettings(config=c)
    configure_local(c, settings)
except (TraitError, ValueError) as e:
    # a bad setting stops local mode with one line naming it, not a traceback
    print(f"claudehub: cannot start local mode: {e}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
# The real key now lives only in the key proxy's service environment: nothing else the hub
# starts (sandboxes included) may inherit it.
os.environ.pop(env.ANTHROPIC_API_KEY, None)
print(banner(settings), file=sys.stderr, flush=True)
