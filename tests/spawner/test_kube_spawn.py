"""ClaudeSpawner against the Kubernetes API emulator: what reaches the API, start, stop,
hub restart, failures, progress and the user's choices."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from tornado import web

from claudehub.contract.tokens import verify_token
from claudehub.spawner.kube import ClaudeSpawner, SandboxStartError
from tests.helpers import PATIENCE, eventually
from tests.spawner.conftest import SECRET, Cluster, reset_kubespawner
from tests.spawner.emulator import running_status, waiting_status
from tests.spawner.pss import restricted_violations

K8S_VERSIONS = ["1.32.0", "1.33.0", "1.34.0", "1.35.0"]
IMAGE = "registry.local/claudehub/sandbox:1.2.3"
SANDBOX_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

MakeSpawner = Callable[..., ClaudeSpawner]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or []}


def validate_everywhere(manifest: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


async def start_and_run(cluster: Cluster, spawner: ClaudeSpawner) -> str:
    start = asyncio.ensure_future(spawner.start())
    await cluster.kubelet.run(cluster.namespace, spawner.pod_name)
    return str(await asyncio.wait_for(start, PATIENCE))


@pytest.mark.asyncio
async def test_spawn_sends_a_hardened_pod_and_a_home_pvc(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner(
        "alice", cpu_limit=2.0, cpu_guarantee=0.25, mem_limit="2G", mem_guarantee="512M"
    )
    await spawner.apply_sandbox_options({"course": "git-basics", "model": "claude-haiku-4-5"})
    url = await start_and_run(cluster, spawner)
    assert url == "http://10.42.0.7:8888"

    [pvc] = cluster.emulator.created("persistentvolumeclaims")
    assert pvc == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "claudehub-home-alice",
            "annotations": {
                "hub.jupyter.org/username": "alice",
                "hub.jupyter.org/kubespawner-version": pvc["metadata"]["annotations"][
                    "hub.jupyter.org/kubespawner-version"
                ],
                "hub.jupyter.org/jupyterhub-version": pvc["metadata"]["annotations"][
                    "hub.jupyter.org/jupyterhub-version"
                ],
            },
            "labels": {
                "hub.jupyter.org/username": "alice",
                "app.kubernetes.io/name": "claudehub",
                "app.kubernetes.io/managed-by": "kubespawner",
                "app.kubernetes.io/component": "sandbox-home",
                "claudehub.io/user": "alice",
            },
        },
        # No storageClassName: the cluster's default class (k3s: local-path).
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    validate_everywhere(pvc)

    [pod] = cluster.emulator.created("pods")
    validate_everywhere(pod)
    assert restricted_violations(pod) == []

    pod = copy.deepcopy(pod)
    (main,) = pod["spec"]["containers"]
    (fetch,) = pod["spec"]["initContainers"]
    env = env_of(main)
    fetch_env = env_of(fetch)
    main.pop("env")
    fetch.pop("env")
    pod["metadata"].pop("annotations")
    expected = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "claudehub-alice",
            "labels": {
                "hub.jupyter.org/username": "alice",
                "app.kubernetes.io/name": "claudehub",
                "app.kubernetes.io/managed-by": "kubespawner",
                "app.kubernetes.io/component": "sandbox",
                "component": "sandbox",
                "hub.jupyter.org/servername": "",
                "claudehub.io/user": "alice",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "restartPolicy": "OnFailure",
            "imagePullSecrets": [],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [
                {
                    "name": "fetch-course",
                    "image": IMAGE,
                    "command": ["python3", "-m", "claudehub.spawner.fetch_course"],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                    "securityContext": SANDBOX_CONTEXT,
                    "volumeMounts": [
                        {"name": "claudehub-course", "mountPath": "/srv/course"},
                        {"name": "claudehub-tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "containers": [
                {
                    "name": "notebook",
                    "image": IMAGE,
                    "args": ["claudehub-singleuser"],
                    "lifecycle": {},
                    "ports": [{"containerPort": 8888, "name": "notebook-port"}],
                    "resources": {
                        "limits": {"cpu": "2.0", "memory": str(2 * 1024**3)},
                        "requests": {"cpu": "0.25", "memory": str(512 * 1024**2)},
                    },
                    "securityContext": SANDBOX_CONTEXT,
                    "volumeMounts": [
                        {"name": "claudehub-home", "mountPath": "/home/claude"},
                        {"name": "claudehub-tmp", "mountPath": "/tmp"},
                        {"name": "claudehub-course", "mountPath": "/srv/course", "readOnly": True},
                    ],
                    "workingDir": "/home/claude",
                }
            ],
            "volumes": [
                {
                    "name": "claudehub-home",
                    "persistentVolumeClaim": {"claimName": "claudehub-home-alice"},
                },
                {"name": "claudehub-tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "claudehub-course", "emptyDir": {"sizeLimit": "256Mi"}},
            ],
        },
    }
    assert pod == expected

    claims = verify_token(SECRET, env["ANTHROPIC_API_KEY"])
    assert (claims.user, claims.server) == ("alice", "")
    assert env["ANTHROPIC_BASE_URL"] == "http://claudehub-keyproxy.claudehub.svc:8000"
    assert env["ANTHROPIC_MODEL"] == "claude-haiku-4-5"
    assert env["CLAUDEHUB_COURSE_ID"] == "git-basics"
    assert env["CLAUDEHUB_COURSE_DIR"] == "/srv/course/git-basics"
    assert env["CLAUDEHUB_PROGRESS_URL"] == (
        "http://claudehub-progress.claudehub.svc:8000/services/progress/"
    )
    assert env["HOME"] == "/home/claude"
    assert env["JUPYTERHUB_API_TOKEN"] == "hub-api-token-alice"
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/claude"
    # Terminal activity reaches the hub (and the idle culler) within a minute.
    assert env["JUPYTERHUB_ACTIVITY_INTERVAL"] == "60"
    assert fetch_env == {
        "CLAUDEHUB_COURSE_DIR": "/srv/course/git-basics",
        "CLAUDEHUB_COURSE_ID": "git-basics",
        "CLAUDEHUB_PROGRESS_URL": "http://claudehub-progress.claudehub.svc:8000/services/progress/",
        "HOME": "/tmp",
        "JUPYTERHUB_API_TOKEN": "hub-api-token-alice",
    }
    # Nothing else secret: the token secret never appears, no Secret reference anywhere.
    everything = repr(cluster.emulator.created("pods"))
    assert SECRET.decode() not in everything
    assert "secretKeyRef" not in everything and "sk-ant-" not in everything

    assert await spawner.poll() is None


@pytest.mark.asyncio
async def test_without_a_course_there_is_no_fetch_step(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner("bob")
    await spawner.apply_sandbox_options({})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    assert "initContainers" not in pod["spec"]
    env = env_of(pod["spec"]["containers"][0])
    assert "CLAUDEHUB_COURSE_DIR" not in env and "CLAUDEHUB_COURSE_ID" not in env
    # The first allowed model is the default.
    assert env["ANTHROPIC_MODEL"] == "claude-sonnet-4-5"


@pytest.mark.asyncio
async def test_gpu_profile(cluster: Cluster, make_spawner: MakeSpawner) -> None:
    spawner = make_spawner("gpu-user", gpu_limit=1, gpu_runtime_class="nvidia")
    await spawner.apply_sandbox_options({})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    validate_everywhere(pod)
    assert restricted_violations(pod) == []


@pytest.mark.asyncio
async def test_stop_deletes_the_pod_and_keeps_the_home(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner("carol")
    await spawner.apply_sandbox_options({})
    await start_and_run(cluster, spawner)
    assert cluster.emulator.live("pods", cluster.namespace, "claudehub-carol") is not None
    await spawner.stop()
    assert cluster.emulator.live("pods", cluster.namespace, "claudehub-carol") is None
    assert await spawner.poll() == 1
    # Claude's history survives: the home PVC stays for the next session.
    assert cluster.emulator.live(
        "persistentvolumeclaims", cluster.namespace, "claudehub-home-carol"
    )


@pytest.mark.asyncio
async def test_a_restarted_hub_finds_the_running_pod(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    before = make_spawner("dave")
    await before.apply_sandbox_options({"course": "python-101"})
    await start_and_run(cluster, before)
    state = before.get_state()

    # A new hub process: no reflectors, no clients, a fresh spawner loaded from the db state.
    from kubespawner import KubeSpawner

    await KubeSpawner._stop_all_reflectors()
    reset_kubespawner()
    after = make_spawner("dave")
    after.load_state(state)
    assert after.pod_name == "claudehub-dave"
    assert await after.poll() is None
    await after.stop()
    assert cluster.emulator.live("pods", cluster.namespace, "claudehub-dave") is None
    assert await after.poll() == 1
    # One pod was ever created: the restart did not start a second one.
    assert len(cluster.emulator.created("pods")) == 1


async def fail_with(
    cluster: Cluster, spawner: ClaudeSpawner, status: Callable[[dict[str, Any]], dict[str, Any]]
) -> str:
    start = asyncio.ensure_future(spawner.start())
    pod = await cluster.kubelet.wait_for_pod(cluster.namespace, spawner.pod_name)
    await cluster.kubelet.set_status(cluster.namespace, spawner.pod_name, status(pod))
    with pytest.raises(SandboxStartError) as info:
        await asyncio.wait_for(start, PATIENCE)
    message = str(info.value)
    # The pod's own failure is reported, not the start timeout running out (the callers
    # check which failure the message names; timed, this flaked on a slow moment).
    assert "did not start within" not in message, message
    assert info.value.jupyterhub_message == message
    await spawner.stop(now=True)
    assert cluster.emulator.live("pods", cluster.namespace, spawner.pod_name) is None
    return message


@pytest.mark.asyncio
async def test_an_image_that_cannot_be_pulled_is_reported(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner("erin")
    await spawner.apply_sandbox_options({})
    message = await fail_with(
        cluster,
        spawner,
        lambda pod: waiting_status(
            pod, "notebook", "ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'
        ),
    )
    assert f"The sandbox image {IMAGE} could not be pulled (ImagePullBackOff" in message
    assert "Ask your operator to load the image into the cluster" in message


@pytest.mark.asyncio
async def test_a_course_that_cannot_be_fetched_is_reported(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner("frank")
    await spawner.apply_sandbox_options({"course": "git-basics"})

    def fetch_failed(pod: dict[str, Any]) -> dict[str, Any]:
        status = waiting_status(pod, "notebook", "PodInitializing", "")
        status["initContainerStatuses"][0]["state"] = {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": "could not fetch course 'git-basics': 503 Service Unavailable",
            }
        }
        return status

    message = await fail_with(cluster, spawner, fetch_failed)
    assert message == (
        "Fetching the course failed (Error: could not fetch course 'git-basics': "
        "503 Service Unavailable). Try again, or pick another course."
    )


@pytest.mark.asyncio
async def test_a_crashing_server_is_reported(cluster: Cluster, make_spawner: MakeSpawner) -> None:
    spawner = make_spawner("grace")
    await spawner.apply_sandbox_options({})

    def crashed(pod: dict[str, Any]) -> dict[str, Any]:
        status = running_status(pod)
        status["containerStatuses"][0]["ready"] = False
        status["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
        return status

    message = await fail_with(cluster, spawner, crashed)
    assert message == "Claude's server exited while starting (exit code 1, Error)."


@pytest.mark.asyncio
async def test_a_pod_that_never_starts_times_out_with_a_clear_message(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner("heidi", start_timeout=2)
    await spawner.apply_sandbox_options({})
    start = asyncio.ensure_future(spawner.start())
    pod = await cluster.kubelet.wait_for_pod(cluster.namespace, spawner.pod_name)
    status = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory.",
            }
        ],
    }
    await cluster.kubelet.set_status(cluster.namespace, pod["metadata"]["name"], status)
    with pytest.raises(SandboxStartError) as info:
        await asyncio.wait_for(start, PATIENCE)
    assert str(info.value) == (
        "Your sandbox did not start within 2 seconds (last step: Waiting for room in the "
        "cluster). Please try again in a few minutes; if it keeps happening, tell your operator."
    )
    await spawner.stop(now=True)


@pytest.mark.asyncio
async def test_progress_speaks_the_users_language(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    spawner = make_spawner("ivan")
    await spawner.apply_sandbox_options({"course": "git-basics"})
    start = asyncio.ensure_future(spawner.start())
    messages: list[str] = []

    async def collect() -> None:
        async for event in spawner.progress():
            messages.append(event["message"])

    collector = asyncio.ensure_future(collect())
    pod = await cluster.kubelet.wait_for_pod(cluster.namespace, spawner.pod_name)

    async def until(text: str) -> None:
        await eventually(lambda: text in messages, what=f"{text!r} shown (got {messages})")

    fetching = waiting_status(pod, "notebook", "PodInitializing", "")
    fetching["initContainerStatuses"][0]["state"] = {"running": {}}
    await cluster.kubelet.set_status(cluster.namespace, "claudehub-ivan", fetching)
    await until("Fetching course…")
    starting = running_status(pod)
    starting["containerStatuses"][0]["ready"] = False
    await cluster.kubelet.set_status(cluster.namespace, "claudehub-ivan", starting)
    await until("Starting Claude…")
    await cluster.kubelet.set_status(cluster.namespace, "claudehub-ivan", running_status(pod))
    await asyncio.wait_for(start, PATIENCE)
    await asyncio.wait_for(collector, PATIENCE)
    assert messages[-2:] == ["Fetching course…", "Starting Claude…"]
    assert all("[" not in m for m in messages)  # no raw Kubernetes event lines


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"course": "rm-rf"},
            "Course 'rm-rf' is not in the catalogue; choose one of: git-basics, python-101",
        ),
        ({"model": "claude-opus-9"}, "Model 'claude-opus-9' is not offered here; choose one of: "),
        ({"image": "evil/image"}, "Unknown option(s): image"),
    ],
)
async def test_bad_choices_are_refused_with_a_400(
    cluster: Cluster, make_spawner: MakeSpawner, options: dict[str, str], message: str
) -> None:
    spawner = make_spawner("judy")
    with pytest.raises(web.HTTPError) as info:
        await spawner.apply_user_options(spawner, options)
    assert info.value.status_code == 400
    assert str(info.value.log_message).startswith(message)
    assert cluster.emulator.created("pods") == []


@pytest.mark.asyncio
async def test_the_options_form_offers_the_allowlists(make_spawner: MakeSpawner) -> None:
    spawner = make_spawner("kim")
    form = await spawner.get_options_form()
    assert 'name="course"' in form and 'value="git-basics"' in form
    assert 'name="model"' in form and 'value="claude-haiku-4-5"' in form
    options = await spawner.options_from_form(
        {"course": ["python-101"], "model": ["claude-haiku-4-5"]}
    )
    assert options == {"course": "python-101", "model": "claude-haiku-4-5"}


PROFILES = [
    {"slug": "default", "display_name": "Standard", "default": True, "kubespawner_override": {}},
    {
        "slug": "gpu",
        "display_name": "GPU",
        "kubespawner_override": {
            "sandbox_resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
            "gpu_limit": 1,
            "gpu_runtime_class": "nvidia",
            "node_selector": {"nvidia.com/gpu.present": "true"},
        },
    },
]


@pytest.mark.asyncio
async def test_a_gpu_profile_is_a_choice_on_the_form(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    resources = {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    spawner = make_spawner("leo", profile_list=PROFILES, sandbox_resources=resources)
    form = await spawner.get_options_form()
    assert 'name="profile"' in form and '<option value="gpu">GPU</option>' in form
    with pytest.raises(web.HTTPError) as info:
        await spawner.apply_user_options(spawner, {"profile": "tpu"})
    assert info.value.status_code == 400
    assert (
        info.value.log_message == "Profile 'tpu' is not offered here; choose one of: default, gpu"
    )

    options = await spawner.options_from_form({"profile": ["gpu"], "course": ["git-basics"]})
    spawner.user_options = options
    await spawner.apply_user_options(spawner, options)
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    main = pod["spec"]["containers"][0]
    # Quantities exactly as configured; the profile's limits merged over the defaults.
    assert main["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    validate_everywhere(pod)
    assert restricted_violations(pod) == []


@pytest.mark.asyncio
async def test_the_default_profile_keeps_the_configured_resources(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    resources = {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    spawner = make_spawner("mia", profile_list=PROFILES, sandbox_resources=resources)
    await spawner.apply_user_options(spawner, {})
    await start_and_run(cluster, spawner)
    [pod] = cluster.emulator.created("pods")
    assert pod["spec"]["containers"][0]["resources"] == resources
    assert "runtimeClassName" not in pod["spec"]


@pytest.mark.asyncio
async def test_a_leftover_pod_of_the_same_name_is_replaced(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    # A pod from a session the hub lost track of (a crashed hub, a restored database).
    stale = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "claudehub-nina", "labels": {"component": "sandbox"}},
        "spec": {"containers": [{"name": "notebook", "image": "old"}]},
    }
    async with cluster.kubelet._session.post(  # type: ignore[union-attr]
        f"{cluster.url}/api/v1/namespaces/{cluster.namespace}/pods", json=stale
    ) as resp:
        assert resp.status == 200
    spawner = make_spawner("nina")
    await spawner.apply_sandbox_options({})
    start = asyncio.ensure_future(spawner.start())
    # The create is refused (409), the stale pod deleted, the new one created (3 creates);
    # the kubelet then starts that one.
    await eventually(lambda: len(cluster.emulator.created("pods")) == 3, what="three creates")
    await cluster.kubelet.run(cluster.namespace, "claudehub-nina")
    assert await asyncio.wait_for(start, PATIENCE) == "http://10.42.0.7:8888"
    live = cluster.emulator.live("pods", cluster.namespace, "claudehub-nina")
    assert live is not None and live["spec"]["containers"][0]["image"] == IMAGE


@pytest.mark.asyncio
async def test_a_class_logging_in_at_once_waits_in_the_queue(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    """With one start slot, three learners' pods are created one after another; the
    waiting learners are told their place; a start that fails hands its slot on."""
    ns = cluster.namespace
    spawners = [make_spawner(name, start_slots=1) for name in ("q-ann", "q-ben", "q-cat")]
    for spawner in spawners:
        await spawner.apply_sandbox_options({})
    first, second, third = spawners
    messages: dict[str, list[str]] = {s.user.name: [] for s in spawners}

    async def collect(spawner: ClaudeSpawner) -> None:
        async for event in spawner.progress():
            messages[spawner.user.name].append(event["message"])

    starts = []
    for spawner in spawners:
        starts.append(asyncio.ensure_future(spawner.start()))
        await asyncio.sleep(0.05)  # in this order
    collectors = [asyncio.ensure_future(collect(s)) for s in spawners]

    async def until(name: str, text: str) -> None:
        await eventually(
            lambda: text in messages[name], what=f"{text!r} shown to {name} (got {messages[name]})"
        )

    pod = await cluster.kubelet.wait_for_pod(ns, first.pod_name)
    ahead = "Many learners are starting at once: 1 learner is ahead of you in the queue."
    await until("q-cat", ahead)
    await until("q-ben", "Many learners are starting at once: you are next in the queue.")
    assert await cluster.kubelet.get_pod(ns, second.pod_name) is None
    assert await cluster.kubelet.get_pod(ns, third.pod_name) is None

    # the first learner's image cannot be pulled: they are told, and the next one starts
    await cluster.kubelet.set_status(
        ns, pod["metadata"]["name"], waiting_status(pod, "notebook", "ErrImagePull", "no")
    )
    with pytest.raises(SandboxStartError):
        await asyncio.wait_for(starts[0], PATIENCE)
    await until("q-cat", "Many learners are starting at once: you are next in the queue.")
    await cluster.kubelet.wait_for_pod(ns, second.pod_name)
    assert await cluster.kubelet.get_pod(ns, third.pod_name) is None
    await cluster.kubelet.run(ns, second.pod_name)
    await asyncio.wait_for(starts[1], PATIENCE)
    await cluster.kubelet.run(ns, third.pod_name)
    await asyncio.wait_for(starts[2], PATIENCE)
    await asyncio.wait_for(asyncio.gather(*collectors[1:]), PATIENCE)
    assert ClaudeSpawner._start_queue is not None and ClaudeSpawner._start_queue.busy == 0
    for spawner in spawners:
        await spawner.stop(now=True)
    collectors[0].cancel()


@pytest.mark.asyncio
async def test_a_stuck_start_gives_its_slot_to_the_next_learner(
    cluster: Cluster, make_spawner: MakeSpawner
) -> None:
    """A pod that cannot be scheduled fails after sandbox_start_timeout, not after the
    whole queue's start_timeout, and the learner waiting behind it starts."""
    ns = cluster.namespace
    # only the stuck pod gets the short sandbox_start_timeout: the next learner's pod must
    # not time out between its creation and the test's kubelet running it
    stuck = make_spawner("s-ada", start_slots=1, sandbox_start_timeout=1, start_timeout=600)
    next_ = make_spawner("s-bo", start_slots=1, sandbox_start_timeout=600, start_timeout=600)
    for spawner in (stuck, next_):
        await spawner.apply_sandbox_options({})
    first = asyncio.ensure_future(stuck.start())
    pod = await cluster.kubelet.wait_for_pod(ns, stuck.pod_name)
    second = asyncio.ensure_future(next_.start())
    unschedulable = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
            }
        ],
    }
    await cluster.kubelet.set_status(ns, pod["metadata"]["name"], unschedulable)
    await asyncio.sleep(0.3)
    assert await cluster.kubelet.get_pod(ns, next_.pod_name) is None  # waits its turn
    with pytest.raises(SandboxStartError, match="did not start within 1 seconds"):
        await asyncio.wait_for(first, PATIENCE)
    await cluster.kubelet.wait_for_pod(ns, next_.pod_name)
    await cluster.kubelet.run(ns, next_.pod_name)
    await asyncio.wait_for(second, PATIENCE)
    for spawner in (stuck, next_):
        await spawner.stop(now=True)
