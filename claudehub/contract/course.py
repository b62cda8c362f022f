"""What a course id may look like.

Course ids appear in URLs (the course service's API, the extension's course routes), in
the spawn form, in ``CLAUDEHUB_COURSE_ID`` and as folder names in the course cache, so
every part checks them the same way: a letter or digit, then letters, digits, ``.``, ``_``
or ``-``, at most 200 characters. No ``/``, no ``..`` at the start, nothing a shell or a
path would read specially.
"""

import re

#: The pattern without anchors or groups, for composing URL routes.
COURSE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
#: A tornado route group capturing one course id.
COURSE_ID_ROUTE = rf"({COURSE_ID_PATTERN})"
COURSE_ID_RE = re.compile(rf"^{COURSE_ID_PATTERN}\Z")


def is_course_id(value: object) -> bool:
    """Whether ``value`` is a string that is a well-formed course id."""
    return isinstance(value, str) and COURSE_ID_RE.match(value) is not None
