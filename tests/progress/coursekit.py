"""Build test course folders and git repositories in both course layouts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

TUTOR_TEXT = """# {title}

You are a friendly tutor. Teach one stage at a time.

## Stage Completion Protocol
When the student answers a quiz correctly, output exactly `[STAGE_COMPLETE:N]`.
When all stages are completed, output exactly `[DUNGEON_COMPLETE]`.
"""


def claude_md_stages() -> list[dict[str, Any]]:
    """Three stages in the original authoring-guide format."""
    return [
        {
            "id": "tokens",
            "stageNumber": 1,
            "title": "Tokens",
            "concepts": [
                {"id": "tok", "title": "What is a token", "content": "A **token** is a piece."},
                {"id": "bpe", "title": "BPE", "content": "Byte pair encoding merges pairs."},
            ],
            "quiz": {
                "id": "q1",
                "question": "What does BPE merge?",
                "type": "multiple-choice",
                "options": ["Letters at random", "Frequent pairs", "Whole documents"],
                "correctAnswer": "Frequent pairs",
            },
        },
        {
            "id": "attention",
            "stageNumber": 2,
            "title": "Attention",
            "concepts": [
                {"id": "qkv", "title": "Queries and keys", "content": "Scores are dot products."}
            ],
            "quiz": {
                "id": "q2",
                "question": "Which operation scores a query against a key?",
                "type": "multiple-choice",
                "options": ["Dot product", "Concatenation"],
                "correctAnswer": "Dot product",
            },
        },
        {
            "id": "reflect",
            "stageNumber": 3,
            "title": "Reflection",
            "concepts": [{"id": "why", "title": "Why it works", "content": "Think about it."}],
            "quiz": {
                "id": "q3",
                "question": "In your own words, why does attention help?",
                "type": "free-response",
            },
        },
    ]


def write_claude_md_course(
    folder: Path, stages: list[dict[str, Any]] | None = None, title: str = "Transformers 101"
) -> Path:
    """A course in the CLAUDE.md-JSON-block layout."""
    folder.mkdir(parents=True, exist_ok=True)
    block = json.dumps({"stages": stages if stages is not None else claude_md_stages()}, indent=2)
    text = TUTOR_TEXT.format(title=title) + "\n## Stages\n\n```json\n" + block + "\n```\n"
    (folder / "CLAUDE.md").write_text(text)
    return folder


def catalogue_modules(legacy: bool = False) -> list[dict[str, Any]]:
    """Two modules; ``legacy`` uses the ``exercises: [...]`` quiz shape."""

    def quiz(question: str, answer: str, explanation: str) -> dict[str, Any]:
        if legacy:
            return {
                "exercises": [{"question": question, "answer": answer, "explanation": explanation}]
            }
        return {"exercise": question, "answer": answer, "explanation": explanation}

    return [
        {
            "id": "foundations",
            "title": "Foundations",
            "description": "Where it starts",
            "concepts": ["ledger", "hashing"],
            "lessons": [
                {
                    "concept_id": "ledger",
                    "title": "Ledgers",
                    "prerequisites": [],
                    "content": "## Ledgers\n\nA ledger records transactions.",
                    "key_ideas": ["append-only"],
                    "paper_ref": "Nakamoto, 2008",
                    "code_ref": "",
                    **quiz(
                        "What does a ledger record?\n\n1) Weather\n2) Transactions\n"
                        "3) Music\n\nType the number.",
                        "Transactions",
                        "A ledger is a record of transactions.",
                    ),
                },
                {
                    "concept_id": "hashing",
                    "title": "Hashing",
                    "prerequisites": ["ledger"],
                    "content": "Hashes fingerprint data.",
                    "key_ideas": ["one-way"],
                    **quiz(
                        "Is a cryptographic hash easy to invert?\n1) Yes\n2) No\nType the number.",
                        "No",
                        "Hashes are one-way functions.",
                    ),
                },
            ],
        },
        {
            "id": "consensus",
            "title": "Consensus",
            "description": "Agreeing on history",
            "concepts": ["pow"],
            "lessons": [
                {
                    "concept_id": "pow",
                    "title": "Proof of work",
                    "prerequisites": ["hashing"],
                    "content": "Miners search for a special number.",
                    "key_ideas": ["costly to produce"],
                    **quiz(
                        "Name the value miners search for.",
                        "nonce",
                        "The nonce makes the hash meet the target.",
                    ),
                },
            ],
        },
    ]


def catalogue_graph() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "ledger", "name": "Ledger", "type": "concept", "level": "foundational"},
            {"id": "hashing", "name": "Hashing", "type": "technique", "level": "foundational"},
            {"id": "pow", "name": "Proof of work", "type": "technique", "level": "intermediate"},
        ],
        "edges": [
            {"source": "ledger", "target": "hashing", "relationship": "builds_on"},
            {"source": "hashing", "target": "pow", "relationship": "requires"},
        ],
    }


def write_catalogue_course(
    paper_dir: Path,
    course: str = "core",
    modules: Any = None,
    graph: Any = None,
    paper: dict[str, Any] | None = None,
) -> Path:
    """``<paper>/<course>/`` in the catalogue layout (plus ``<paper>/paper.json``)."""
    folder = paper_dir / course
    (folder / "knowledge").mkdir(parents=True, exist_ok=True)
    if paper is not None:
        (paper_dir / "paper.json").write_text(json.dumps(paper))
    (folder / "CLAUDE.md").write_text(
        "# Bitcoin Learning Path\n\nYou are a friendly tutor.\n"
        "Learner progress: .learner/progress.json (created on first use)\n"
    )
    mods = catalogue_modules() if modules is None else modules
    (folder / "knowledge" / "courses.json").write_text(json.dumps(mods, indent=2))
    (folder / "knowledge" / "graph.json").write_text(
        json.dumps(catalogue_graph() if graph is None else graph, indent=2)
    )
    return folder


PAPER = {
    "title": "Bitcoin: A Peer-to-Peer Electronic Cash System",
    "description": "The paper that started it.",
    "authors": [{"name": "Satoshi Nakamoto"}],
    "publishedAt": "2008-10-31",
    "organization": {"name": "Common Computer"},
    "sortOrder": 1,
}


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def make_bare_repo(work: Path, bare: Path, branch: str = "main") -> str:
    """Commit everything in ``work`` and push it to a new bare repo; returns its file:// URL."""
    git(work, "init", "-q", "-b", branch)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "course")
    git(work.parent, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), f"{branch}:{branch}")
    return f"file://{bare}"
