"""Course layouts: one module per way a course repository can be written.

- :mod:`.catalogue`: the public course catalogue (``knowledge/courses.json``, optional
  ``knowledge/graph.json`` and the paper's ``../paper.json`` card);
- :mod:`.claude_md`: the original authoring guide (a ``CLAUDE.md`` whose fenced
  ```` ```json ```` block holds ``{"stages": [...]}``);
- :mod:`.common`: what both share (file names, reading files, field checks, quiz options).

:mod:`claudehub.progress.parsing` picks the layout and is what callers import.
"""
