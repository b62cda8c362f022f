"""Course authoring's settings (``c.Authoring.*``; the chart's ``authoring.*`` values)."""

from __future__ import annotations

import ipaddress
import os

from traitlets import Bool, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

MiB = 1024 * 1024


class Authoring(Configurable):
    """Course authoring in the course service: drafts, their papers, publishing."""

    enabled = Bool(
        False,
        help="""Whether instructors may author courses here (the api/drafts routes). Off:
        they answer 404 and no published course is loaded.""",
    ).tag(config=True)

    drafts_dir = Unicode(
        help="""Where drafts live (one folder each: the paper, the course files, its
        metadata). The chart puts it on the course service's own volume, which no sandbox
        mounts."""
    ).tag(config=True)

    @default("drafts_dir")
    def _default_drafts_dir(self) -> str:
        return os.path.abspath("claudehub-drafts")

    repository = Unicode(
        help="""The course repository the service manages: a bare git repository (created
        when missing). Every publish is one commit on :attr:`branch` and one tag
        ``<course>/v<N>``."""
    ).tag(config=True)

    @default("repository")
    def _default_repository(self) -> str:
        return os.path.abspath("claudehub-courses.git")

    branch = Unicode("main", help="The managed repository's branch publishes commit to.").tag(
        config=True
    )

    published_dir = Unicode(
        help="""Where published versions are unpacked from the repository to be served
        (rebuilt from the repository when missing)."""
    ).tag(config=True)

    @default("published_dir")
    def _default_published_dir(self) -> str:
        return os.path.abspath("claudehub-published")

    remote_url = Unicode(
        "",
        help="""Optional remote the managed repository is pushed to after each publish
        (e.g. ``git@git.example.org:courses/published.git``). Empty: none.""",
    ).tag(config=True)

    deploy_key_file = Unicode(
        "",
        help="""Private SSH key file for :attr:`remote_url` (the chart mounts it from a
        Secret into the course service only; no sandbox ever holds it). Empty: git's
        defaults (e.g. a file:// or https:// remote).""",
    ).tag(config=True)

    known_hosts_file = Unicode(
        "",
        help="""SSH known_hosts file for :attr:`remote_url` (host keys are checked
        strictly; empty with a deploy key: the push fails on an unknown host).""",
    ).tag(config=True)

    max_upload_bytes = Int(
        30 * MiB,
        help="Largest paper (PDF) accepted, uploaded or fetched (bytes); bigger gets 413.",
    ).tag(config=True)

    max_pages = Int(200, help="Most pages a paper may have; more gets 413.").tag(config=True)

    max_figures = Int(
        60, help="Most figures extracted from a paper (the rest are counted, not kept)."
    ).tag(config=True)

    extract_timeout = Float(
        60.0,
        help="""Seconds the extraction of one paper may take (it runs in a child process,
        killed then: the paper is refused).""",
    ).tag(config=True)

    extract_memory_bytes = Int(
        1024 * MiB,
        help="""Address space of the child process that extracts a paper (a PDF needing more
        is refused, the service is unharmed).""",
    ).tag(config=True)

    max_draft_bytes = Int(
        50 * MiB,
        help="Largest draft folder accepted by PUT api/drafts/<id>/files (uncompressed bytes).",
    ).tag(config=True)

    max_draft_files = Int(2000, help="Most files a draft folder may hold.").tag(config=True)

    fetch_timeout = Float(
        30.0, help="Seconds a paper URL may take to fetch, redirects included."
    ).tag(config=True)

    max_redirects = Int(5, help="Most redirects followed when fetching a paper URL.").tag(
        config=True
    )

    fetch_allowed_networks = List(
        Unicode(),
        help="""Networks (CIDR) paper URLs may point into although they are not public,
        e.g. an on-premises paper server's ``10.1.2.0/24``. Empty (default): only public
        addresses; private, loopback, link-local, unique-local, multicast and metadata
        addresses are refused.""",
    ).tag(config=True)

    @validate("fetch_allowed_networks")
    def _check_networks(self, proposal: dict[str, list[str]]) -> list[str]:
        for net in proposal["value"]:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as e:
                raise TraitError(f"fetch_allowed_networks: {e}") from None
        return proposal["value"]

    commit_author = Unicode(
        "claudehub course service <claudehub@localhost>",
        help="Author of the managed repository's commits (the instructor is named in each "
        "message).",
    ).tag(config=True)
