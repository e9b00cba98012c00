"""The documentation a new user reads points only at files inside the repository, and those files exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)")  # markdown link targets
PATH_IN_CODE = re.compile(r"`((?:\.\./|/)[\w./-]+\.(?:md|py|toml|json))`")  # `../x.md`, `/abs/x.md`


def documents() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").rglob("*.md")),
        *sorted((ROOT / "providers").rglob("*.md")),
    ]


def test_docs_link_only_to_files_inside_the_repository_that_exist():
    problems = []
    for doc in documents():
        text = doc.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                problems.append(f"{doc.relative_to(ROOT)} -> {target}")
        problems += [f"{doc.relative_to(ROOT)} names {path}" for path in PATH_IN_CODE.findall(text)]
    assert problems == []
