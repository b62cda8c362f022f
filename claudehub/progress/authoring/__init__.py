"""Course authoring, the course service's side (docs/authoring.md).

An instructor turns a paper into a course: the service takes the paper in (an upload, or a
URL it fetches itself behind an SSRF guard: :mod:`.intake`), extracts its text and figures
(:mod:`.extract`) into a draft it keeps on its own volume (:mod:`.drafts`), checks and
previews what the author sandbox writes there with the catalogue's own parser
(:mod:`.preview`), and publishes a checked draft as a new version in a git repository it
manages (:mod:`.publish`), visible in the picker only to the classes the instructor chose.
Who is an instructor is asked of the hub with the service's own token (:mod:`.access`); the
HTTP API is :mod:`.handlers`, the settings :mod:`.config`.
"""
