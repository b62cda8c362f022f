"""JupyterHub configuration for claudehub on Kubernetes (the chart's hub Deployment runs this).

All logic lives in claudehub.hub (settings.py checks the chart's values it is handed,
kubernetes.py turns them into configuration). What the chart puts in the hub's environment,
the settings file's path ($CLAUDEHUB_CONFIG, default /etc/claudehub/config/values.yaml) and
the secrets, is read by HubEnvironment's traits. A bad setting or a
missing secret stops the hub here, with one line naming it, instead of a half-configured hub.
"""

import sys

from claudehub.hub.kubernetes import HubEnvironment, configure_kubernetes
from claudehub.hub.settings import SettingsError, load

c = get_config()  # type: ignore[name-defined]  # noqa: F821

try:
    environment = HubEnvironment(config=c)
    configure_kubernetes(c, load(environment.config_file or None), environment)
except SettingsError as e:
    print(f"claudehub: cannot start the hub: {e}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
