"""The chart README's values table, from values.yaml's `# --` comments (helm-docs style).

Usage: python deploy/helm/tools/values_table.py [--check]
Rewrites the table between the `<!-- values:begin -->` and `<!-- values:end -->` markers of
deploy/helm/stockpipe/README.md; with --check, exits 1 when the README is stale instead
(tests/deploy/test_chart.py runs it so).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "stockpipe"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
KEY = re.compile(r"^( *)([A-Za-z0-9_]+):(.*)$")


def rows(text: str) -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) for every key documented with `# --`."""
    data = yaml.safe_load(text)
    out, stack, comment = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = stripped[4:].strip()
            continue
        m = KEY.match(line)
        if not m:
            if stripped and not stripped.startswith("#"):
                comment = None
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        if comment is not None:
            value = data
            for k in stack:
                value = value[k]
            kind = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
                type(value), "")
            default = json.dumps(value, separators=(", ", ": "))
            if len(default) > 60:
                default = "(see values.yaml)"
            out.append((".".join(stack), kind, default, comment))
        comment = None
    return out


def table(text: str) -> str:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, desc in rows(text):
        bar = "\\|"
        lines.append(f"| `{key}` | {kind} | `{default.replace('|', bar)}` | {desc.replace('|', bar)} |")
    return "\n".join(lines)


def main() -> int:
    readme = CHART / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + table((CHART / "values.yaml").read_text()) + "\n" + text[end:]
    if "--check" in sys.argv[1:]:
        if new != text:
            print("deploy/helm/stockpipe/README.md: values table is stale: "
                  "run python deploy/helm/tools/values_table.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
