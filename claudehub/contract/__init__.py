"""The written contract between claudehub's parts.

claudehub is five parts that run as separate processes, often in separate containers:
the hub (``claudehub.hub`` configuring ``claudehub.spawner``), the sandbox's server
extension (``claudehub.server_ext``), the key proxy (``claudehub.proxy``) and the course
service (``claudehub.progress``). They meet only through what this package writes down:

- :mod:`claudehub.contract.env`: the environment variables one part sets and another reads;
- :mod:`claudehub.contract.hub`: the hub's service names, the scopes each part's token is
  given and relies on, and the extension's authorization resource;
- :mod:`claudehub.contract.course`: what a course id may look like (URLs, form fields,
  file names);
- :mod:`claudehub.contract.labels`: the Kubernetes labels of sandbox pods, which the
  chart's NetworkPolicies select on;
- :mod:`claudehub.contract.tokens`: the sandbox token format (minted by the hub, checked by
  the key proxy) and the one way to load the secret both sign it with;
- :mod:`claudehub.contract.forkserver`: local mode's requests from the spawner to the fork
  server that forks the single-user servers;
- :mod:`claudehub.contract.backup`: the backup document both services export and restore;
- :mod:`claudehub.contract.course_client`: the course service's HTTP API as its callers
  use it (the spawners, the course-fetch init container, the extension's panels).

Nothing here imports another part, and no part imports another part's modules: a test
(``tests/test_contract.py``) walks every import to keep it so. Changing anything here is
changing a wire format: every side has to change in the same release.
"""
