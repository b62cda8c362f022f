"""The labels of sandbox pods and their volumes.

The chart's NetworkPolicies and ResourceQuota select sandbox pods by these labels
(``helm/claudehub/templates/sandbox/``), and the hub's spawner sets them; a change here
without the chart would leave sandboxes outside their network policy.
"""

APP_NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
USER_LABEL = "claudehub.io/user"

APP_NAME = "claudehub"
SANDBOX_COMPONENT = "sandbox"
STORAGE_COMPONENT = "sandbox-home"
