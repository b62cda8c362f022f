"""What every claudehub spawner does, whatever runs the sandbox.

The local-process spawner and the Kubernetes spawner both mix in
:class:`SandboxSpawnerMixin`. It owns the sandbox contract of ``ARCHITECTURE.md``:

- the sandbox gets ``ANTHROPIC_BASE_URL`` (the key proxy) and a *sandbox token* in
  ``ANTHROPIC_API_KEY``, minted per spawn with the secret the key proxy verifies;
- the real Anthropic key never reaches the sandbox: any variable whose value looks like a
  real key, or whose name the operator marked secret, is removed from the environment;
- the user chooses a course and a model from operator allowlists, and a bad choice is
  refused with a message that names it (HTTP 400, JupyterHub's error shape);
- an instructor may instead start an *author session* on one of their drafts
  (``user_options = {"draft": "<id>"}``, docs/authoring.md): checked here (an instructor's
  role, a draft the course service lists as theirs), the sandbox then gets
  ``CLAUDEHUB_DRAFT_ID``/``CLAUDEHUB_DRAFT_DIR`` instead of a course and a token whose
  ``knd`` claim is ``author``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tornado import web
from traitlets import (
    Callable as CallableTrait,
)
from traitlets import (
    Float,
    HasTraits,
    List,
    Unicode,
    default,
    validate,
)

from claudehub.contract import env as contract_env
from claudehub.contract.course import is_course_id
from claudehub.contract.hub import INSTRUCTOR_ROLE_PREFIX, PROGRESS_SERVICE
from claudehub.contract.tokens import AUTHOR, load_token_secret, mint_token

from . import picker
from .picker import FORM_TEMPLATES, render_picker

#: Environment variable names a sandbox must never receive from the hub's environment.
SECRET_ENV_NAMES = frozenset(
    {
        "ANTHROPIC_AUTH_TOKEN",
        contract_env.TOKEN_SECRET,
        "CLAUDEHUB_REAL_API_KEY",
        contract_env.DEV_PASSWORD,
        "JUPYTERHUB_CRYPT_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
    }
)

#: Real Anthropic keys look like this; sandbox tokens never do.
REAL_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")


def scrub_environment(env: dict[str, str], real_keys: list[str]) -> dict[str, str]:
    """Return ``env`` without any secret a sandbox must not see.

    Removes the variables named in :data:`SECRET_ENV_NAMES`, any value that equals (or
    contains) one of ``real_keys``, and any value shaped like a real Anthropic key.
    """
    clean = {}
    for name, value in env.items():
        if name in SECRET_ENV_NAMES:
            continue
        if any(key and key in value for key in real_keys):
            continue
        if REAL_KEY_PATTERN.search(value):
            continue
        clean[name] = value
    return clean


class SandboxSpawnerMixin(HasTraits):
    """Sandbox environment, sandbox tokens and the course/model choice, for any spawner.

    Mix in before the concrete spawner class:
    ``class LocalSandboxSpawner(SandboxSpawnerMixin, SimpleLocalProcessSpawner)``.
    """

    keyproxy_url = Unicode(
        "",
        help="""URL the sandbox uses as ANTHROPIC_BASE_URL: the key proxy.

        Local mode: the key proxy service's URL on 127.0.0.1. Kubernetes: the key proxy's
        Service URL inside the cluster.
        """,
    ).tag(config=True)

    progress_url = Unicode(
        "",
        help="""Base URL of the course+progress service API, ending in '/'.

        Handed to the sandbox as CLAUDEHUB_PROGRESS_URL, and used by the spawner to list
        courses and fetch the chosen course's files.
        """,
    ).tag(config=True)

    token_secret = Unicode(
        "",
        help="""HMAC secret shared with the key proxy, used to mint sandbox tokens.

        Prefer token_secret_file. Never logged.
        """,
    ).tag(config=True)

    token_secret_file = Unicode(
        "",
        help="""File holding the sandbox-token secret (read when a token is minted, so a
        rotated secret takes effect without a hub restart).""",
    ).tag(config=True)

    token_ttl = Float(
        12 * 3600.0,
        help="""Seconds a sandbox token stays valid at most, even while its server runs.

        The key proxy also refuses a token within 60 s of its server stopping; this bound is
        defence in depth for a token that leaks during a long session. 0 means no expiry.
        """,
    ).tag(config=True)

    real_key_values = List(
        Unicode(),
        help="""Values that must never reach a sandbox (the real Anthropic key, in local
        mode where the hub's configuration knows it). Any environment variable containing
        one of them is dropped.""",
    ).tag(config=True)

    allowed_models = List(
        Unicode(),
        help="""Models the user may choose from. Empty: no model choice, Claude Code's
        default. The first one is preselected.""",
    ).tag(config=True)

    course_choices = CallableTrait(
        allow_none=True,
        default_value=None,
        help="""Callable ``(spawner) -> list of {"id", "title", "description"?}`` (may be
        async) listing the courses the user may pick. Default: ask the course+progress
        service at progress_url.""",
    ).tag(config=True)

    progress_service_name = Unicode(
        PROGRESS_SERVICE,
        help="Name of the course+progress service in the hub (for the access scope).",
    ).tag(config=True)

    model = Unicode("", help="The model the sandbox runs (set from the user's choice).")
    course_id = Unicode("", help="The course the sandbox opens (set from the user's choice).")
    draft_id = Unicode(
        "", help="The draft an author session writes (set from an instructor's choice)."
    )

    draft_choices = CallableTrait(
        allow_none=True,
        default_value=None,
        help="""Callable ``(spawner) -> list of {"id", "title", ...}`` (may be async) listing
        the drafts this user may start an author session on. Default: the course service's
        ``GET api/drafts``, asked as the user (docs/authoring.md).""",
    ).tag(config=True)

    @validate("progress_url")
    def _progress_url_ends_in_slash(self, proposal: dict[str, Any]) -> str:
        url = str(proposal["value"])
        return url if not url or url.endswith("/") else url + "/"

    @validate("keyproxy_url")
    def _keyproxy_url_has_no_slash(self, proposal: dict[str, Any]) -> str:
        # The CLI appends /v1/messages to ANTHROPIC_BASE_URL itself.
        return str(proposal["value"]).rstrip("/")

    # -- tokens ------------------------------------------------------------------------

    def _secret(self) -> bytes:
        return load_token_secret(self.token_secret, self.token_secret_file)

    def mint_sandbox_token(self) -> str:
        """A fresh sandbox token for this user's server (never the real key)."""
        secret = self._secret()
        if not secret:
            raise web.HTTPError(
                500,
                "claudehub is misconfigured: no sandbox-token secret "
                "(set token_secret_file or token_secret on the spawner)",
            )
        user = self.user.name  # type: ignore[attr-defined]
        server = getattr(self, "name", "") or ""
        # An author session's usage is metered and limited apart from learning's.
        kind = AUTHOR if self.draft_id else None
        return mint_token(secret, user, server, ttl=self.token_ttl or None, kind=kind)

    def sandbox_env(self, course_dir: str = "", draft_dir: str = "") -> dict[str, str]:
        """The claudehub part of the sandbox environment (see ARCHITECTURE.md); an author
        session's has the draft (``draft_dir``: where it is in the sandbox), no course."""
        env = {
            contract_env.ANTHROPIC_BASE_URL: self.keyproxy_url,
            contract_env.ANTHROPIC_API_KEY: self.mint_sandbox_token(),
            # The CLI must not phone home: sandboxes have no egress but the key proxy.
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
        }
        if self.model:
            env[contract_env.ANTHROPIC_MODEL] = self.model
        if self.course_id:
            env[contract_env.COURSE_ID] = self.course_id
        if course_dir:
            env[contract_env.COURSE_DIR] = course_dir
        if self.draft_id:
            env[contract_env.DRAFT_ID] = self.draft_id
            env[contract_env.DRAFT_DIR] = draft_dir
            env[contract_env.AUTHOR_CLASSES] = ",".join(self.instructed_classes())
        if self.progress_url:
            env[contract_env.PROGRESS_URL] = self.progress_url
        return env

    # -- course and model choice --------------------------------------------------------

    #: The spawn form's fields this spawner reads (the Kubernetes spawner adds "profile").
    form_option_names: tuple[str, ...] = ("course", "model", "draft")

    def _course_service_token(self) -> str:
        """A short-lived token of this user that can do nothing but reach the course service.

        Kept for a few minutes, so rendering the picker or the home page does not mint (and
        store in the hub's database) a new token for every page view.
        """
        now = time.monotonic()
        cached = getattr(self, "_claudehub_service_token", None)
        if cached and cached[1] > now:
            return str(cached[0])
        token = self.user.new_api_token(  # type: ignore[attr-defined]
            note="claudehub: courses and progress for the hub's pages",
            expires_in=SERVICE_TOKEN_LIFETIME,
            scopes=[f"access:services!service={self.progress_service_name}"],
        )
        # reused for less than its lifetime, so a request never carries an expiring token
        self._claudehub_service_token = (token, now + SERVICE_TOKEN_LIFETIME / 2)
        return str(token)

    async def list_course_choices(self) -> list[dict[str, Any]]:
        """The courses this user may pick (empty when none are configured).

        The course service's list is reused for COURSE_LIST_SECONDS: one start reads it
        twice (the picker form's check, then the options'), a refused start (HTTP 429)
        again on each retry, and with a class starting at once those round trips through
        a busy hub timed out (benchmarks/scale).
        """
        if self.course_choices is not None:
            result = self.course_choices(self)
            if isinstance(result, Awaitable):
                result = await result
            return list(result)
        if not self.progress_url:
            return []
        from claudehub.contract.course_client import list_courses

        now = time.monotonic()
        cached = getattr(self, "_claudehub_courses", None)
        if cached and cached[1] > now:
            return list(cached[0])
        # The course service only answers hub users: ask as this user, with a short-lived
        # token that can do nothing but reach that service.
        courses = await list_courses(self.progress_url, self._course_service_token())
        self._claudehub_courses = (courses, now + COURSE_LIST_SECONDS)
        return list(courses)

    async def learner_progress(self) -> dict[str, dict[str, Any]]:
        """This user's progress by course id (``GET api/progress``, as the user).

        Empty when there is no course service or it cannot answer: the picker then shows
        every course as not started rather than failing the page.
        """
        if not self.progress_url:
            return {}
        from claudehub.contract.course_client import ProgressAPIError, ProgressClient

        client = ProgressClient(self.progress_url, self._course_service_token())
        try:
            data = await client.request("GET", "progress", request_timeout=10)
        except (ProgressAPIError, OSError, ValueError) as e:
            self.log.warning("Could not read the progress of %s: %s", self.user.name, e)  # type: ignore[attr-defined]
            return {}
        entries = data.get("progress") if isinstance(data, dict) else None
        return {
            str(p["course_id"]): p
            for p in entries or []
            if isinstance(p, dict) and "course_id" in p
        }

    async def claudehub_home(self) -> dict[str, Any] | None:
        """The hub home page's "Continue <course> at stage N" (templates call this).

        None before any course, or when the course service cannot answer (the home page
        then offers the picker, which says what is wrong).
        """
        from claudehub.contract.course_client import ProgressAPIError

        try:
            return await picker.home_summary(self)
        except (ProgressAPIError, OSError, ValueError) as e:
            self.log.warning("Could not read the courses for %s: %s", self.user.name, e)  # type: ignore[attr-defined]
            return None

    @default("options_form")
    def _default_options_form(self) -> Callable[[Any], Awaitable[str]]:
        return render_options_form

    @default("options_from_form")
    def _default_options_from_form(
        self,
    ) -> Callable[[dict[str, list[Any]]], Awaitable[dict[str, str]]]:
        spawner = self

        async def from_form(formdata: dict[str, list[Any]]) -> dict[str, str]:
            # Checked here, before the spawn starts, so JupyterHub shows a refusal on the
            # spawn page itself; apply_user_options checks again for API spawns.
            options = picker.options_from_formdata(formdata, spawner.form_option_names)
            if "draft" in options:  # an author session: no course to pick
                try:
                    await spawner.apply_sandbox_options(options)
                except web.HTTPError as e:
                    raise picker.plain_choice_error(e) from None
                return options
            await picker.check_course_choice(spawner, options)
            rest = {k: v for k, v in options.items() if k != "course"}
            try:
                await spawner.apply_sandbox_options(rest)
            except web.HTTPError as e:
                raise picker.plain_choice_error(e) from None
            return options

        return from_form

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Callable[[Any, dict[str, Any]], Awaitable[None]]:
        async def apply(spawner: SandboxSpawnerMixin, options: dict[str, Any]) -> None:
            await spawner.apply_sandbox_options(options)

        return apply

    async def apply_sandbox_options(self, options: dict[str, Any]) -> None:
        """Check the user's course and model against the allowlists, then apply them.

        Raises ``HTTPError(400)`` naming the bad value, which JupyterHub shows the user.
        """
        unknown = sorted(set(options) - {"course", "model", "draft"})
        if unknown:
            raise web.HTTPError(400, f"Unknown option(s): {', '.join(unknown)}")
        # Each start says what it opens: a course, a draft, or neither (no leftovers).
        self.draft_id = ""
        if "draft" in options:
            await self._apply_draft(options)
            return
        model = options.get("model") or ""
        if not isinstance(model, str):
            raise web.HTTPError(400, "The model must be a string")
        if model:
            if model not in self.allowed_models:
                allowed = ", ".join(self.allowed_models) or "(no choice offered)"
                raise web.HTTPError(
                    400, f"Model {model!r} is not offered here; choose one of: {allowed}"
                )
            self.model = model
        elif self.allowed_models:
            self.model = self.allowed_models[0]
        course = options.get("course") or ""
        if not isinstance(course, str):
            raise web.HTTPError(400, "The course must be a string")
        if course:
            choices = await self.list_course_choices()
            ids = [c["id"] for c in choices]
            if course not in ids:
                raise web.HTTPError(
                    400,
                    f"Course {course!r} is not in the catalogue; choose one of: {', '.join(ids) or '(none)'}",
                )
            self.course_id = course

    # -- author sessions (docs/authoring.md) ---------------------------------------------

    def instructed_classes(self) -> list[str]:
        """The classes this user instructs (their ``claudehub-instructor-<class>`` roles)."""
        roles = getattr(self.user, "roles", None) or []  # type: ignore[attr-defined]
        names = [getattr(role, "name", "") for role in roles]
        return sorted(
            n[len(INSTRUCTOR_ROLE_PREFIX) :] for n in names if n.startswith(INSTRUCTOR_ROLE_PREFIX)
        )

    async def list_drafts(self) -> list[dict[str, Any]]:
        """This user's drafts (``GET api/drafts`` as the user), for the checks and the home
        page; raises ``ProgressAPIError``/``OSError`` when the service cannot answer."""
        if self.draft_choices is not None:
            result = self.draft_choices(self)
            if isinstance(result, Awaitable):
                result = await result
            return list(result)
        if not self.progress_url:
            return []
        from claudehub.contract.course_client import ProgressClient

        client = ProgressClient(self.progress_url, self._course_service_token())
        data = await client.request("GET", "drafts", request_timeout=10)
        drafts = data.get("drafts") if isinstance(data, dict) else None
        return [d for d in drafts or [] if isinstance(d, dict) and isinstance(d.get("id"), str)]

    async def claudehub_authoring(self) -> dict[str, Any] | None:
        """What the hub's home page offers an instructor (templates call this): their
        classes and drafts, ``drafts`` None when the course service cannot list them; None
        for a user who instructs no class."""
        classes = self.instructed_classes()
        if not classes:
            return None
        from claudehub.contract.course_client import ProgressAPIError

        try:
            drafts: list[dict[str, Any]] | None = await self.list_drafts()
        except (ProgressAPIError, OSError, ValueError) as e:
            self.log.warning("Could not list the drafts of %s: %s", self.user.name, e)  # type: ignore[attr-defined]
            drafts = None
        running = self.draft_id if getattr(self, "active", False) else ""
        return {"classes": classes, "drafts": drafts, "running_draft": running}

    async def _apply_draft(self, options: dict[str, Any]) -> None:
        """An author session: the user instructs a class and the draft is theirs."""
        draft = options.get("draft")
        if not isinstance(draft, str) or not is_course_id(draft):
            raise web.HTTPError(400, f"The draft must be a draft id, not {draft!r}")
        if options.get("course"):
            raise web.HTTPError(400, "Choose a course or a draft, not both")
        if not self.instructed_classes():
            raise web.HTTPError(
                403, "Only instructors can write courses: you instruct no class on this hub"
            )
        from claudehub.contract.course_client import ProgressAPIError

        try:
            drafts = await self.list_drafts()
        except (ProgressAPIError, OSError, ValueError) as e:
            self.log.warning("Could not list the drafts of %s: %s", self.user.name, e)  # type: ignore[attr-defined]
            raise web.HTTPError(
                503, "Your drafts cannot be listed right now. Please try again in a minute."
            ) from None
        if draft not in {d["id"] for d in drafts}:
            raise web.HTTPError(404, f"Draft {draft!r} is not one of your drafts")
        model = options.get("model") or ""
        if model and model not in self.allowed_models:
            allowed = ", ".join(self.allowed_models) or "(no choice offered)"
            raise web.HTTPError(
                400, f"Model {model!r} is not offered here; choose one of: {allowed}"
            )
        self.model = model or (self.allowed_models[0] if self.allowed_models else "")
        self.course_id = ""
        self.draft_id = draft


#: Seconds a token minted for the hub's course pages lives (reused for half of it).
SERVICE_TOKEN_LIFETIME = 300

#: Seconds a user's course list from the course service is reused by their spawner (a
#: course added meanwhile shows up that much later; a removed one still fails its start at
#: the course fetch, saying so).
COURSE_LIST_SECONDS = 30.0


async def render_options_form(spawner: SandboxSpawnerMixin) -> str:
    """The spawn form: the course picker and, when several are allowed, a model picker.

    Returns an empty string (no form) when there is nothing to choose.
    """
    return await render_picker(spawner)


__all__ = [
    "FORM_TEMPLATES",
    "SECRET_ENV_NAMES",
    "SandboxSpawnerMixin",
    "render_options_form",
    "scrub_environment",
]
