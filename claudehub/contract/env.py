"""Environment variables that cross from one part to another.

The spawners set the sandbox variables; the server extension and the launcher read them
(as trait defaults). The hub and the key proxy share the token secret through the
variables at the end. A part's own settings (database URLs, ports) are not listed here:
they belong to that part's traits.
"""

#: The key proxy's URL, as Claude Code expects it (it appends ``/v1/messages``).
ANTHROPIC_BASE_URL = "ANTHROPIC_BASE_URL"
#: In a sandbox: the sandbox token (never the real key). In the key proxy: the real key.
ANTHROPIC_API_KEY = "ANTHROPIC_API_KEY"
#: The model the learner picked (one of the operator's allowed models).
ANTHROPIC_MODEL = "ANTHROPIC_MODEL"

#: The course service's base URL, ending in ``/`` (e.g. ``.../services/progress/``).
PROGRESS_URL = "CLAUDEHUB_PROGRESS_URL"
#: The id of the course the learner picked (see :mod:`claudehub.contract.course`).
COURSE_ID = "CLAUDEHUB_COURSE_ID"
#: Where the course's files are unpacked, read-only for the sandbox.
COURSE_DIR = "CLAUDEHUB_COURSE_DIR"

#: The HMAC secret sandbox tokens are signed with, shared by the hub and the key proxy.
TOKEN_SECRET = "CLAUDEHUB_TOKEN_SECRET"
#: A file holding that secret (wins over :data:`TOKEN_SECRET`; a mounted Kubernetes Secret).
TOKEN_SECRET_FILE = "CLAUDEHUB_TOKEN_SECRET_FILE"

#: What the spawners put in a sandbox's environment, and nothing else of claudehub's.
SANDBOX_ENV = (
    ANTHROPIC_BASE_URL,
    ANTHROPIC_API_KEY,
    ANTHROPIC_MODEL,
    PROGRESS_URL,
    COURSE_ID,
    COURSE_DIR,
)
