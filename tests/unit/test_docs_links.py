"""The documentation holds together: README.md and every docs/**/*.md.

- every relative link leads to a file (or folder) of the repository, and a `#anchor` to a heading of the target
  with that GitHub slug (lower case; punctuation but `-`, `_` and spaces dropped; spaces to `-`; a repeated heading
  gets `-1`, `-2`...);
- every file in docs/ is reachable from the README, directly or through a doc that links it (an index);
- the README stays short (at most 250 lines), with a newcomer's path — clone, `./dev up`, the walkthrough,
  `./dev test` — on its first screen.

Links inside fenced code blocks and code spans are not links. Links with a scheme (https:, mailto:) are not checked.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
FIRST_SCREEN_LINES = 40

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
# [text](target "title") and ![alt](target); the text may hold one level of brackets and span lines.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^)\s]*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)", re.MULTILINE)
CODE_SPAN = re.compile(r"(`+)(?!`)(?:(?!\n[ \t]*\n).)*?(?<!`)\1(?!`)", re.DOTALL)  # not across a blank line
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def documents() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    """The text with fenced code blocks blanked out (line numbers kept) and code spans made plain words."""
    lines, fence = [], ""
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
            lines.append("")
        elif opening:
            fence = opening.group(1)
            lines.append("")
        else:
            lines.append(line)
    return CODE_SPAN.sub(lambda m: "code" + "\n" * m.group(0).count("\n"), "\n".join(lines))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before making it unique)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or an image: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")  # inline HTML, code marks
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor GitHub makes in a Markdown text: one per heading, repeats numbered as github-slugger does."""
    found: set[str] = set(HTML_ANCHOR.findall(text))
    occurrences: dict[str, int] = {}
    for line in prose(text).split("\n"):
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = anchor = slug(heading.group(2))
        while anchor in occurrences:
            occurrences[base] += 1
            anchor = f"{base}-{occurrences[base]}"
        occurrences[anchor] = 0
        found.add(anchor)
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    body = prose(text)
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION):
        for match in pattern.finditer(body):
            target = match.group(1)
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            yield body.count("\n", 0, match.start()) + 1, target


def resolve(doc: Path, target: str) -> tuple[Path | None, str]:
    """The file or folder a relative link leads to (None for an absolute URL) and its fragment."""
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None, ""
    path, _, fragment = target.partition("#")
    return ((doc.parent / unquote(path)).resolve() if path else doc), unquote(fragment)


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    problems = []
    root = root.resolve()
    text = doc.read_text(encoding="utf-8")
    for line, target in links(text):
        dest, fragment = resolve(doc, target)
        where = f"{doc.resolve().relative_to(root).as_posix()}:{line}: ({target})"
        if dest is None:
            continue
        if not dest.is_relative_to(root):
            problems.append(f"{where} leads out of the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif fragment:
            if dest.is_dir() or dest.suffix.lower() != ".md":
                problems.append(f"{where}: an anchor into something that is not a Markdown file")
            elif fragment not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading with the anchor #{fragment} in {dest.name}")
    return problems


def reachable_from(start: Path) -> set[Path]:
    """Every existing file reached from `start` by relative links, following links in the Markdown files reached."""
    seen: set[Path] = set()
    queue = [start]
    while queue:
        doc = queue.pop()
        for _, target in links(doc.read_text(encoding="utf-8")):
            dest, _ = resolve(doc, target)
            if dest is not None and dest.is_dir() and (dest / "README.md").is_file():
                dest = dest / "README.md"  # GitHub shows a folder's README
            if dest is None or not dest.is_file() or dest in seen:
                continue
            seen.add(dest)
            if dest.suffix.lower() == ".md" and dest.is_relative_to(ROOT):
                queue.append(dest)
    return seen


@pytest.mark.parametrize("doc", documents(), ids=shown)
def test_every_relative_link_leads_to_a_file_and_every_anchor_to_a_heading(doc: Path) -> None:
    problems = broken_links(doc)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_file_in_docs_is_linked_from_the_readme_directly_or_through_an_index() -> None:
    files = {path.resolve() for path in DOCS.rglob("*") if path.is_file()}
    assert files, "docs/ holds the documentation"
    unlinked = sorted(shown(path) for path in files - reachable_from(README))
    assert not unlinked, f"not reachable from README.md: {unlinked}"


def test_the_readme_fits_in_250_lines() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_a_newcomers_path_is_on_the_readmes_first_screen() -> None:
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN_LINES])
    for step in ("git clone", "./dev up", "(#submit-a-case-and-follow-it)", "./dev test"):
        assert step in first, f"{step!r} is not in the README's first {FIRST_SCREEN_LINES} lines"
    assert "submit-a-case-and-follow-it" in anchors(README.read_text(encoding="utf-8"))


# --- the checker itself ------------------------------------------------------------------------------------------


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Security: who can see what") == "security-who-can-see-what"
    assert slug("What is guaranteed, and what is not") == "what-is-guaranteed-and-what-is-not"
    assert slug("Who may use which topic: SASL/SCRAM and ACLs") == "who-may-use-which-topic-saslscram-and-acls"
    assert slug("Encryption at rest and erasure (intake)") == "encryption-at-rest-and-erasure-intake"
    assert slug("Observability: read a case's flow") == "observability-read-a-cases-flow"
    assert slug("The `kit`'s [map](x.md) — in_short") == "the-kits-map--in_short"
    assert anchors("# Results\n\n## Results\n\n```\n# Results\n```\n\n### Results\n") == {
        "results",
        "results-1",
        "results-2",
    }


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B\n\n## Two words\n", encoding="utf-8")
    (tmp_path / "a.md").write_text(
        "# A\n\n"
        "[fine](docs/b.md), [fine too](docs/b.md#two-words), [here](#a), [web](https://example.org/x.md)\n"
        "[gone](docs/c.md) and [no heading](docs/b.md#three-words) and [not here](#b)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n\n"
        "[split over\nlines](docs/missing.md)\n\n[ref]: docs/also-missing.md\n",
        encoding="utf-8",
    )

    problems = broken_links(tmp_path / "a.md", root=tmp_path)

    assert [problem.split(": (", 1)[0] for problem in problems] == ["a.md:4", "a.md:4", "a.md:4", "a.md:11", "a.md:14"]
    assert "(docs/c.md): no such file" in problems[0]
    assert "no heading with the anchor #three-words in b.md" in problems[1]
    assert "no heading with the anchor #b in a.md" in problems[2]
