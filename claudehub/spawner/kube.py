"""ClaudeSpawner: one hardened sandbox pod per user, on Kubernetes (k3s in production).

It is a :class:`kubespawner.KubeSpawner` that

- builds the pod the usual KubeSpawner way (so profiles, resources, tolerations, node
  selectors and the like work as documented), then adds the sandbox's own volumes (home
  PVC, ``/tmp``, the read-only course folder and the init container that fetches it) and
  passes the result through :func:`~claudehub.spawner.objects.harden_pod`, last thing
  before the pod is sent to the API server — after ``modify_pod_hook`` — so no profile
  override, config value or hook can make the pod privileged, root, host-attached or
  holding a service-account token;
- hands the sandbox the key proxy URL and a freshly minted sandbox token
  (:class:`~claudehub.spawner.common.SandboxSpawnerMixin`), never the real key;
- reports progress in words a user understands and turns pods that will not start (image
  cannot be pulled, course cannot be fetched, server crashed) into a clear message at
  once instead of a timeout.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from kubernetes_asyncio.client import ApiException, V1PersistentVolumeClaim, V1Pod
from kubespawner import KubeSpawner
from markupsafe import Markup
from tornado import web
from traitlets import Dict, Int, List, Unicode, default, validate

from claudehub.contract import env as contract_env
from claudehub.contract import labels

from . import codec, objects
from .common import FORM_TEMPLATES, SandboxSpawnerMixin, scrub_environment
from .common import render_options_form as _sandbox_form
from .podstatus import progress_message, start_failure
from .startqueue import StartQueue, shared_queue, waiting_message

#: Name KubeSpawner gives the main container.
MAIN_CONTAINER = "notebook"


class SandboxStartError(Exception):
    """The sandbox pod will not start; the message is shown to the user as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # JupyterHub shows this attribute instead of str(exc) on the spawn page.
        self.jupyterhub_message = message


class ClaudeSpawner(SandboxSpawnerMixin, KubeSpawner):  # type: ignore[misc, unused-ignore]  # untyped base (no stubs)
    """Spawn each user's Claude Code sandbox as a locked-down pod."""

    sandbox_uid = Int(
        1000,
        help="""User id every container of the sandbox pod runs as. Must not be 0.

        Enforced on the pod and every container, whatever uid/extra_container_config or
        a profile says.""",
    ).tag(config=True)

    sandbox_gid = Int(
        1000,
        help="Group id (and fsGroup) every container of the sandbox pod runs as. Not 0.",
    ).tag(config=True)

    @validate("sandbox_uid", "sandbox_gid")
    def _non_root(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value <= 0:
            name = proposal["trait"].name
            raise ValueError(f"{name} must be a non-root id (> 0), got {value}")
        return value

    home_mount_path = Unicode(
        "/home/claude",
        help="Where the user's home volume (a PVC) is mounted: $HOME in the sandbox image.",
    ).tag(config=True)

    course_mount_path = Unicode(
        "/srv/course",
        help="""Where the course folder is mounted, read-only, in the sandbox. The chosen
        course is fetched into <course_mount_path>/<course id> before the sandbox starts.""",
    ).tag(config=True)

    draft_mount_path = Unicode(
        "/home/claude/drafts",
        help="""Author sessions (docs/authoring.md): where the drafts folder (an emptyDir, the
        one writable path besides $HOME and /tmp) is mounted; the draft is
        <draft_mount_path>/<draft id>, filled from the course service by the server.""",
    ).tag(config=True)

    draft_size_limit = Unicode(
        "256Mi", help="Size limit of an author session's drafts emptyDir ('' for none)."
    ).tag(config=True)

    author_image = Unicode(
        "",
        help="""Image of author sessions' pods: the sandbox image with the author policy
        (managed-settings-author.json) installed as its managed settings
        (images/sandbox/Dockerfile.author). Empty: author sessions are refused, since the
        learner's image lets Claude write nothing.""",
    ).tag(config=True)

    tmp_size_limit = Unicode("1Gi", help="Size limit of the /tmp emptyDir ('' for none).").tag(
        config=True
    )

    course_size_limit = Unicode(
        "256Mi", help="Size limit of the course emptyDir ('' for none)."
    ).tag(config=True)

    course_fetch_command = List(
        Unicode(),
        ["python3", "-m", "claudehub.spawner.fetch_course"],
        help="""Command of the init container that fetches the course bundle.

        It runs in course_fetch_image with CLAUDEHUB_PROGRESS_URL, CLAUDEHUB_COURSE_ID,
        CLAUDEHUB_COURSE_DIR (where to unpack) and JUPYTERHUB_API_TOKEN (to authenticate
        to the course+progress service) in its environment.""",
    ).tag(config=True)

    course_fetch_image = Unicode(
        "",
        help="Image of the course-fetching init container. Default: the sandbox image.",
    ).tag(config=True)

    course_fetch_resources = Dict(
        {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
        help="Resource requests/limits of the course-fetching init container.",
    ).tag(config=True)

    sandbox_resources = Dict(
        {},
        help="""Requests and limits of the sandbox container, Kubernetes style, e.g.
        ``{"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory":
        "1Gi"}}``. Quantities are sent exactly as written; they win over cpu_limit,
        mem_limit and friends. A profile's override merges into this.""",
    ).tag(config=True)

    activity_interval = Int(
        60,
        help="""Seconds between the sandbox server's activity reports to the hub
        (JUPYTERHUB_ACTIVITY_INTERVAL). The idle culler sees activity at most this late.""",
    ).tag(config=True)

    gpu_limit = Int(
        0,
        help="nvidia.com/gpu limit of the sandbox container (0: no GPU).",
    ).tag(config=True)

    gpu_runtime_class = Unicode(
        "",
        help="runtimeClassName for sandbox pods with a GPU (e.g. 'nvidia' on k3s).",
    ).tag(config=True)

    start_slots = Int(
        0,
        help="""Sandboxes of this hub starting at once, from the pod's creation until it
        runs; later starts wait their turn, first come first served, and the start-up page
        tells each learner how many are ahead. A class logging in at once then gets its
        sandboxes a few at a time instead of JupyterHub's concurrent_spawn_limit refusing
        the rest with an error page (set that limit above the class size). The wait counts
        against start_timeout. 0: no queue.""",
    ).tag(config=True)

    sandbox_start_timeout = Int(
        0,
        help="""Seconds one sandbox may take from its pod's creation until it runs, within
        start_timeout (which also covers the wait for a start slot). 0: whatever is left of
        start_timeout. A pod stuck longer fails with a message and hands its slot on.""",
    ).tag(config=True)

    @validate("start_slots", "sandbox_start_timeout")
    def _slots_not_negative(self, proposal: dict[str, Any]) -> int:
        value = int(proposal["value"])
        if value < 0:
            raise ValueError(f"{proposal['trait'].name} must be 0 or more, got {value}")
        return value

    #: the hub's one queue of starts (every spawner of the process shares it)
    _start_queue: ClassVar[StartQueue | None] = None

    # -- KubeSpawner defaults that make sense for claudehub ----------------------------

    @default("image")
    def _default_image(self) -> str:
        return "claudehub/sandbox:0.1.0"

    @default("common_labels")
    def _default_common_labels(self) -> dict[str, str]:
        return {
            labels.APP_NAME_LABEL: labels.APP_NAME,
            "app.kubernetes.io/managed-by": "kubespawner",
        }

    @default("component_label")
    def _default_component_label(self) -> str:
        return labels.SANDBOX_COMPONENT

    @default("pod_name_template")
    def _default_pod_name_template(self) -> str:
        return "claudehub-{user_server}"

    @default("pvc_name_template")
    def _default_pvc_name_template(self) -> str:
        return "claudehub-home-{username}"

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self) -> bool:
        return True

    @default("storage_capacity")
    def _default_storage_capacity(self) -> str:
        return "1Gi"

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        # Explicit rather than the image's CMD, so the pod spec says what runs:
        # jupyterhub-singleuser with claudehub's lean imports (idle RSS under 60 MB).
        return ["claudehub-singleuser"]

    @default("default_url")
    def _default_default_url(self) -> str:
        return "/claude"

    @default("k8s_api_request_timeout")
    def _default_k8s_api_request_timeout(self) -> int:
        # KubeSpawner's 3 s include the hub's own event loop: with a class starting at once
        # the loop lags for seconds, and answered requests were counted lost and retried
        # until the starts failed (benchmarks/scale). A stalled API still fails the start.
        return 15

    @default("k8s_api_request_retry_timeout")
    def _default_k8s_api_request_retry_timeout(self) -> int:
        return 60

    @default("events_enabled")
    def _default_events_enabled(self) -> bool:
        # Progress comes from the pod's own status; no events watch (and no RBAC for it).
        return False

    @default("uid")
    def _default_uid(self) -> int:
        return self.sandbox_uid

    @default("gid")
    def _default_gid(self) -> int:
        return self.sandbox_gid

    @default("fs_gid")
    def _default_fs_gid(self) -> int:
        return self.sandbox_gid

    @default("automount_service_account_token")
    def _default_automount(self) -> bool:
        return False

    @default("working_dir")
    def _default_working_dir(self) -> str:
        return self.home_mount_path

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._starting = False
        self._ticket: asyncio.Future[None] | None = None

    # -- environment -------------------------------------------------------------------

    @property
    def course_dir(self) -> str:
        """Where the chosen course's files are in the sandbox ('' without a course)."""
        if not self.course_id:
            return ""
        return posixpath.join(self.course_mount_path, self.course_id)

    @property
    def draft_dir(self) -> str:
        """Where an author session's draft is in the sandbox ('' without a draft)."""
        if not self.draft_id:
            return ""
        return posixpath.join(self.draft_mount_path, self.draft_id)

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        env["HOME"] = self.home_mount_path
        env["JUPYTERHUB_ACTIVITY_INTERVAL"] = str(self.activity_interval)
        env.update(self.sandbox_env(self.course_dir, self.draft_dir))
        return scrub_environment(env, list(self.real_key_values))

    # -- the user's choices: course, model and (when the operator offers several) profile --

    def _profiles(self) -> list[dict[str, Any]]:
        profiles = self.profile_list
        return list(profiles) if isinstance(profiles, list) else []

    @default("options_form")
    def _default_options_form(self) -> Any:
        async def form(spawner: ClaudeSpawner) -> str:
            html_form = await _sandbox_form(spawner)
            profiles = spawner._profiles()
            if len(profiles) < 2:
                return str(html_form)
            choices = [
                {
                    "value": p["slug"],
                    "label": p.get("display_name") or p["slug"],
                    "selected": bool(p.get("default")),
                }
                for p in profiles
            ]
            # html_form is render_options_form's output, escaped by its template already,
            # so it goes in as markup; only the profile values are escaped here.
            return FORM_TEMPLATES.get_template("kube_options_form.html").render(
                sandbox_form=Markup(html_form), profiles=choices
            )

        return form

    #: The spawn form posts the machine (profile) too.
    form_option_names = ("course", "model", "profile", "draft")

    async def apply_sandbox_options(self, options: dict[str, Any]) -> None:
        """Check the profile against the operator's profiles, then course and model.

        KubeSpawner applies the profile's overrides at start; the pod is hardened after
        them, so no profile can weaken it.
        """
        options = dict(options)
        profile = options.pop("profile", None)
        if profile:
            slugs = [p["slug"] for p in self._profiles()]
            if not isinstance(profile, str) or profile not in slugs:
                raise web.HTTPError(
                    400,
                    f"Profile {profile!r} is not offered here; choose one of: "
                    f"{', '.join(slugs) or '(no profiles)'}",
                )
        if options.get("draft") and not self.author_image:
            raise web.HTTPError(
                400,
                "Author sessions are not set up on this hub (no author image: the chart's "
                "sandbox.authorImage)",
            )
        await super().apply_sandbox_options(options)

    # -- manifests ---------------------------------------------------------------------

    def _fetch_container(self) -> dict[str, Any] | None:
        if not self.course_id:
            return None
        env = {
            contract_env.PROGRESS_URL: self.progress_url,
            contract_env.COURSE_ID: self.course_id,
            contract_env.COURSE_DIR: self.course_dir,
            contract_env.HUB_API_TOKEN: self.api_token or "",
            "HOME": "/tmp",
        }
        return objects.course_fetch_container(
            image=self.course_fetch_image or self.image,
            command=list(self.course_fetch_command),
            env=env,
            course_path=self.course_mount_path,
            image_pull_policy=self.image_pull_policy,
            resources=self.course_fetch_resources,
        )

    def sandbox_manifest(self, pod: V1Pod | dict[str, Any]) -> dict[str, Any]:
        """``pod`` (as KubeSpawner or a hook built it) with claudehub's storage and rules.

        Raises :class:`~claudehub.spawner.objects.SandboxPolicyError` when the pod asks for
        something a sandbox may not have.
        """
        manifest = codec.to_dict(pod)
        objects.add_sandbox_storage(
            manifest,
            main_container=MAIN_CONTAINER,
            volumes=objects.sandbox_volumes(
                self.pvc_name,
                self.tmp_size_limit,
                self.course_size_limit,
                draft_size_limit=self.draft_size_limit if self.draft_id else None,
            ),
            mounts=objects.sandbox_volume_mounts(
                self.home_mount_path,
                self.course_mount_path,
                self.draft_mount_path if self.draft_id else "",
            ),
            init_container=self._fetch_container(),
        )
        spec = manifest["spec"]
        for container in spec["containers"]:
            if container["name"] == MAIN_CONTAINER and self.draft_id:
                # the author policy is the image's managed settings: root-owned, read-only
                container["image"] = self.author_image
            if container["name"] == MAIN_CONTAINER and self.sandbox_resources:
                resources = container.setdefault("resources", {})
                for part, amounts in self.sandbox_resources.items():
                    resources.setdefault(part, {}).update(amounts)
            if container["name"] == MAIN_CONTAINER:
                # The server port, named as KubeSpawner finds it; the NetworkPolicy lets
                # the proxy in on this port only.
                ports = [
                    p for p in container.get("ports") or [] if p.get("containerPort") != self.port
                ]
                container["ports"] = [{"containerPort": self.port, "name": "notebook-port"}, *ports]
        if self.gpu_limit > 0:
            for container in spec["containers"]:
                if container["name"] == MAIN_CONTAINER:
                    limits = container.setdefault("resources", {}).setdefault("limits", {})
                    limits["nvidia.com/gpu"] = str(self.gpu_limit)
            if self.gpu_runtime_class:
                spec["runtimeClassName"] = self.gpu_runtime_class
        return objects.harden_pod(
            manifest,
            uid=self.sandbox_uid,
            gid=self.sandbox_gid,
            fs_gid=self.sandbox_gid,
            username=self.user.name,
        )

    def _checked_manifest(self, pod: V1Pod) -> dict[str, Any]:
        try:
            return self.sandbox_manifest(pod)
        except objects.SandboxPolicyError as e:
            self.log.error("Refusing sandbox pod for %s: %s", self._log_name, e)
            raise SandboxStartError(
                f"The sandbox configuration is not allowed: {e}. Ask your operator."
            ) from e

    async def get_pod_manifest(self) -> V1Pod:
        """KubeSpawner's pod, with the sandbox volumes and every sandbox invariant applied."""
        manifest = self._checked_manifest(await super().get_pod_manifest())
        pod: V1Pod = codec.to_model(manifest, "V1Pod")
        return pod

    async def _make_create_pod_request(self, pod: V1Pod, request_timeout: float) -> bool:
        """Create the pod; True when done, False to be retried (KubeSpawner's contract)."""
        # The last point before the API server. A modify_pod_hook runs after
        # get_pod_manifest, so when one is set the invariants are enforced once more on
        # what is really sent. Without one, this is get_pod_manifest's own output.
        if self.modify_pod_hook:
            pod = codec.to_model(self._checked_manifest(pod), "V1Pod")
        name = pod.metadata.name
        self.log.info("Attempting to create pod %s, with timeout %s", name, request_timeout)
        try:
            # The API server echoes the pod back; it is not turned into a model nobody
            # reads (a sandbox pod is big, and this runs on the hub for every spawn).
            response = await asyncio.wait_for(
                self.api.create_namespaced_pod(self.namespace, pod, _preload_content=False),
                request_timeout,
            )
            async with response:
                body = await response.read()
                if not 200 <= response.status <= 299:
                    error = ApiException(status=response.status, reason=response.reason)
                    error.body = body
                    raise error
            return True
        except TimeoutError:
            return False  # tried again
        except ApiException as e:
            if e.status != 409:
                self.log.error("Failed to create pod %s: %s %s", name, e.status, e.reason)
                raise
            # A pod of that name exists (a previous session not yet gone): remove it and
            # let KubeSpawner try again.
            self.log.info("Found existing pod %s, attempting to kill", name)
            await self.stop(True)
            return False

    def get_pvc_manifest(self) -> V1PersistentVolumeClaim:
        """The user's home PVC, labelled as claudehub storage (not as a sandbox pod)."""
        pvc: V1PersistentVolumeClaim = super().get_pvc_manifest()
        labels = dict(pvc.metadata.labels or {})
        labels.pop("component", None)
        labels.update(objects.storage_labels(self.user.name))
        pvc.metadata.labels = labels
        return pvc

    # -- start, progress, failures -----------------------------------------------------

    def _current_pod(self) -> dict[str, Any] | None:
        reflector = self.pod_reflector
        if reflector is None:
            return None
        pod: dict[str, Any] | None = reflector.pods.get(f"{self.namespace}/{self.pod_name}")
        return pod

    def is_pod_running(self, pod: dict[str, Any] | None) -> bool:
        # KubeSpawner polls this while it waits for the pod; a pod that will never run
        # ends the wait at once with a message instead of a timeout minutes later.
        if self._starting:
            problem = start_failure(pod, MAIN_CONTAINER)
            if problem:
                raise SandboxStartError(problem)
        return bool(super().is_pod_running(pod))

    def _queue(self) -> StartQueue:
        return shared_queue(ClaudeSpawner, self.start_slots)

    def _set_ticket(self, ticket: asyncio.Future[None] | None) -> None:
        self._ticket = ticket

    async def _start(self) -> Any:
        self._ticket = None
        until = asyncio.get_running_loop().time() + self.start_timeout
        if self.start_slots <= 0:
            return await self._start_pod(until)
        # The slot is held until the pod runs (or fails): the next learner's pod is
        # created as this one's is done.
        async with self._queue().slot(self._set_ticket):
            return await self._start_pod(until)

    async def _start_pod(self, until: float) -> Any:
        self._starting = True
        left = until - asyncio.get_running_loop().time()
        # Give up a little before JupyterHub does, so the user reads why.
        budget = max(1.0, left - min(5.0, self.start_timeout * 0.1))
        if self.sandbox_start_timeout:
            budget = min(budget, self.sandbox_start_timeout)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            return await asyncio.wait_for(super()._start(), budget)
        except TimeoutError as e:
            where = progress_message(self._current_pod()).rstrip("…")
            if loop.time() - began < budget - 1:
                # Not this budget: KubeSpawner gave up on the API (a request unanswered for
                # k8s_api_request_timeout, retried for k8s_api_request_retry_timeout).
                raise SandboxStartError(
                    f"The cluster did not answer the hub in time (last step: {where}). "
                    "Please try again in a minute; if it keeps happening, tell your operator."
                ) from e
            raise SandboxStartError(
                f"Your sandbox did not start within {budget:.0f} seconds "
                f"(last step: {where}). Please try again in a few minutes; if it keeps "
                "happening, tell your operator."
            ) from e
        finally:
            self._starting = False

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Spawn progress in words: requesting, fetching course, starting Claude."""
        last = ""
        step = 0
        while True:
            future = self._start_future
            done = future is not None and future.done()
            ticket = self._ticket
            if ticket is not None and not ticket.done() and not done:
                message = waiting_message(self._queue().ahead_of(ticket))
            else:
                message = progress_message(self._current_pod())
            if message != last:
                last = message
                step += 1
                yield {"progress": min(90, 20 * step), "message": message}
            if done:
                return
            await asyncio.sleep(0.5)
