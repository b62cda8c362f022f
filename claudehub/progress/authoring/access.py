"""Who is an author, and which classes a user is in: asked of the hub with the service's
own token, never taken from the caller's token.

An author is an instructor: a user holding some class's instructor role
(``claudehub-instructor-<class>``, :mod:`claudehub.hub.classes`). The hub tells the course
service a user's roles (its role holds ``read:roles:users``) and groups (``read:users``), so
the author sandbox's own server token, which carries no class scopes, still works: the
service asks about the token's user, whatever the token may do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from claudehub.contract.hub import INSTRUCTOR_ROLE_PREFIX


class PeopleUnavailable(Exception):
    """The hub did not answer who a user is."""


@dataclass(frozen=True)
class Person:
    """A hub user's classes: the ones they learn in (groups) and the ones they instruct."""

    name: str
    groups: frozenset[str]
    instructs: frozenset[str]
    admin: bool = False

    @property
    def is_author(self) -> bool:
        """Whether this user may author courses (an instructor of some class)."""
        return bool(self.instructs)


@dataclass
class HubPeople:
    """Users' groups and instructor roles from the hub API, kept ``ttl`` seconds."""

    api_url: str
    token: str
    ttl: float = 5.0
    _cache: dict[str, tuple[float, Person]] = field(default_factory=dict)

    async def person(self, name: str) -> Person:
        """``name``'s groups and instructed classes (:class:`PeopleUnavailable` when the hub
        does not answer)."""
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        req = HTTPRequest(
            f"{self.api_url.rstrip('/')}/users/{quote(name, safe='')}",
            headers={"Authorization": f"token {self.token}"},
            request_timeout=10,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
            model = json.loads(resp.body)
        except HTTPClientError as e:
            raise PeopleUnavailable(f"the hub answered {e.code} about user {name!r}") from None
        except (OSError, ValueError) as e:
            raise PeopleUnavailable(f"the hub did not answer about user {name!r}: {e}") from None
        roles = [str(r) for r in model.get("roles") or []]
        person = Person(
            name=name,
            groups=frozenset(str(g) for g in model.get("groups") or []),
            instructs=frozenset(
                r[len(INSTRUCTOR_ROLE_PREFIX) :]
                for r in roles
                if r.startswith(INSTRUCTOR_ROLE_PREFIX) and len(r) > len(INSTRUCTOR_ROLE_PREFIX)
            ),
            admin=bool(model.get("admin")),
        )
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[name] = (now, person)
        return person
