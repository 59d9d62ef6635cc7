"""The README and docs/ stand alone: every relative link lands on a file (and heading) of this repository, no file
points at documents outside it, and the README's commands table names every command `make help` lists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# [text](target) and ![alt](target); a target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# Spelt in two halves, so that this file does not mention what it forbids.
OUTSIDE_REFERENCES = ("../" + "shared", "shared" + "/docs")
# Where other tools keep what is not ours: virtual environments, peer SDKs, node modules, build output.
NOT_OURS = (".venv", ".peer", "node_modules", "cdk.out", "chalice.out")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans, where a bracket is code, not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for ``path``: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text(encoding="utf-8"))) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_documents_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/events.md", "docs/protocols.md", "docs/reliability.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_lands_on_a_file_and_heading_of_the_repository(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT).as_posix()}")
    assert broken == []


def test_the_link_checker_sees_a_broken_link_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [no](missing.md) [gone](#nowhere) `[code](x.md)`\n")
    targets = relative_links(tmp_path / "a.md")
    assert targets == ["#title", "missing.md", "#nowhere"]
    assert anchors(tmp_path / "a.md") == {"title"}


def test_anchors_follow_githubs_rules_for_code_and_punctuation(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("## The CLI: `python -m ops`\n## `event_id` and duplicates\n## Notes\n## Notes\n")
    assert anchors(page) == {"the-cli-python--m-ops", "event_id-and-duplicates", "notes", "notes-1"}


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout.decode("utf-8")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if set(Path(name).parts) & set(NOT_OURS) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            files.append(path)
    return files


def test_no_tracked_file_points_at_documents_outside_the_repository() -> None:
    offenders = []
    for path in tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders.extend(
            f"{path.relative_to(ROOT).as_posix()}: {reference}" for reference in OUTSIDE_REFERENCES if reference in text
        )
    assert offenders == []


def make_help_targets() -> list[str]:
    """The commands `make help` lists (it prints the Makefile's `## make <target>...` lines)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return re.findall(r"^  make ([a-z][a-z0-9-]*)", listed, re.MULTILINE)


def test_the_readmes_commands_table_names_every_command_make_help_lists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `make")]
    targets = make_help_targets()
    assert len(targets) >= 10
    missing = [t for t in targets if not any(re.search(rf"`make {t}(`| )", cell) for cell in first_cells)]
    assert missing == []
