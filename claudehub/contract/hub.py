"""What the parts rely on the hub for: service names, scopes and roles.

The key proxy and the course service are JupyterHub services; they find themselves by name
(``JUPYTERHUB_SERVICE_NAME``) and are reached at ``/services/<name>/``. Each gets the
narrowest role that lets it do its job, and a sandbox's own hub token gets
:data:`SERVER_TOKEN_SCOPES`. Both hub configurations (local and Kubernetes) take them from
here, so the two modes cannot drift apart.
"""

from typing import Any

KEYPROXY_SERVICE = "keyproxy"
PROGRESS_SERVICE = "progress"
CULLER_SERVICE = "idle-culler"

#: The extension's authorization resource: its handlers use ``@authorized`` with this
#: ``auth_resource``, as jupyter_server_terminals does with "terminals".
AUTH_RESOURCE = "claude"

#: What every user may do beyond the default "user" role: call the course service.
USER_EXTRA_SCOPES = [f"access:services!service={PROGRESS_SERVICE}"]

#: What a sandbox server's own hub token may do: report activity, be reached by its owner,
#: reach the course service on its user's behalf (the page's course panels) and stop its
#: own server (the page's "End session"). Nothing more.
SERVER_TOKEN_SCOPES = [
    "users:activity!user",
    "access:servers!server",
    "servers!server",
    f"access:services!service={PROGRESS_SERVICE}",
]


#: A custom scope (JupyterHub >= 5): read the progress, usage and sessions of a class's
#: learners. Granted filtered by class (``!group=<class>``) to its instructors; unfiltered it
#: means every class (the operators of claudehub.hub.classes).
CLASS_READ_SCOPE = "custom:claudehub-class:read"

#: The course service's OAuth client may carry these on a user's behalf (its
#: ``oauth_client_allowed_scopes``): the class page needs to see the caller's class scopes,
#: and ends a session with the caller's own ``delete:servers`` (the hub checks which).
PROGRESS_OAUTH_SCOPES = [CLASS_READ_SCOPE, "delete:servers"]

#: ``c.JupyterHub.custom_scopes`` for the scopes above.
CUSTOM_SCOPES: dict[str, dict[str, str]] = {
    CLASS_READ_SCOPE: {
        "description": "Read the course progress, token usage and sessions of a class's learners.",
    },
}

#: The role of one class's instructors is this prefix and the class (group) name.
INSTRUCTOR_ROLE_PREFIX = "claudehub-instructor-"

#: The role of hub staff who see and stop everything but may not attach to a learner's
#: server (claudehub.hub.classes, when admins_attach_servers is off).
OPERATOR_ROLE = "claudehub-operator"


def service_roles(*, culler: bool = False) -> list[dict[str, Any]]:
    """The roles of claudehub's hub services, each with the scopes its code relies on."""
    roles: list[dict[str, Any]] = [
        {
            # Polls which servers run, so a sandbox token dies with its server, and the
            # classes (groups) with their members and limits (claudehub.contract.limits).
            "name": "claudehub-keyproxy",
            "scopes": [
                "list:users",
                "read:users:name",
                "read:servers",
                "list:groups",
                "read:groups",
            ],
            "services": [KEYPROXY_SERVICE],
        },
        {
            # Resolves who is asking (a user's or a server's token) and whether they are admin.
            "name": "claudehub-progress",
            # The class page (see claudehub.hub.classes) also reads a class's members and
            # whose session runs; course authoring reads a user's roles (who instructs which
            # class: docs/authoring.md) and groups (who sees a published course).
            "scopes": [
                "list:users",
                "read:users:name",
                "read:users",
                "read:roles:users",
                "read:servers",
                "list:groups",
                "read:groups",
            ],
            "services": [PROGRESS_SERVICE],
        },
    ]
    if culler:
        roles.append(
            {
                # What jupyterhub-idle-culler needs to stop servers, and nothing about users.
                "name": "claudehub-idle-culler",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": [CULLER_SERVICE],
            }
        )
    return roles
