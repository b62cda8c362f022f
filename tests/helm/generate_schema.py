"""Generate helm/claudehub/values.schema.json from its commented source, values.schema.yaml.

Run after editing the YAML:  .venv/bin/python tests/helm/generate_schema.py
tests/helm/test_schema.py fails when the committed JSON differs from what this produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "claudehub"
SOURCE = CHART / "values.schema.yaml"
TARGET = CHART / "values.schema.json"


def render_schema(source: Path = SOURCE) -> str:
    """The JSON text of the schema (stable key order, trailing newline)."""
    schema = yaml.safe_load(source.read_text(encoding="utf-8"))
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    TARGET.write_text(render_schema(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
