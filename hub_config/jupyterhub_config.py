"""JupyterHub configuration for claudehub on Kubernetes (the chart's hub Deployment runs this).

All logic lives in claudehub.hub (settings.py checks the mounted settings file,
kubernetes.py turns it into configuration). Settings: $CLAUDEHUB_CONFIG, default
/etc/claudehub/values.yaml. A bad setting or a missing secret stops the hub here, with one
line naming it, instead of a half-configured hub.
"""

import sys

from claudehub.hub.kubernetes import configure_kubernetes
from claudehub.hub.settings import SettingsError, load

c = get_config()  # type: ignore[name-defined]  # noqa: F821

try:
    configure_kubernetes(c, load())
except SettingsError as e:
    print(f"claudehub: cannot start the hub: {e}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
