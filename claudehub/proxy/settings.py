"""The key proxy server's settings: one dataclass, filled by the application from its traits.

Every field here has a ``KeyProxyApp`` trait of the same name and default
(:meth:`~claudehub.proxy.app.KeyProxyApp.build_settings` copies them by name, and a test keeps
the two in step), so a new setting is one field and one trait.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_FORWARD_HEADERS = (
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "accept",
    "user-agent",
    "x-app",
    "x-claude-code-session-id",
    "x-stainless-*",
)


@dataclass
class ProxySettings:
    """Everything the server needs; the traitlets app fills this from configuration."""

    upstream_url: str = "https://api.anthropic.com"
    upstream_ca_file: str = ""
    api_key: str = ""
    forward_headers: Sequence[str] = DEFAULT_FORWARD_HEADERS
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 20.0
    body_timeout: float = 120.0
    keepalive_timeout: float = 75.0
    upstream_connect_timeout: float = 10.0
    upstream_timeout: float = 600.0
    upstream_idle_timeout: float = 300.0
    upstream_pool_size: int = 256
    upstream_pool_idle_timeout: float = 30.0
    max_connections: int = 10000
    access_log: bool = False
