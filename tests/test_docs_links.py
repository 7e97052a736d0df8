"""The README is a short guide and the docs/ pages hold the rest: every relative link and picture in them
resolves (an ``#anchor`` into a Markdown file to one of its headings, by GitHub's slug rules), the README stays
under 15,000 bytes, every page can be reached from the index, and the README's two commands are the ones CI and
a new user run. Offline and fast: it only reads files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"

#: Link targets written on another branch that is not merged yet; only these may be missing. The lead empties
#: this set when that branch lands (the test below fails once a listed file exists, as a reminder).
PENDING: set = set()

README_LIMIT_BYTES = 15_000
APP_COMMAND = "pip install -r requirements.txt && streamlit run app.py"
TEST_COMMAND = "pip install -r requirements.txt && python -m pytest -q"

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _outside_fences(text: str) -> list[str]:
    """The lines of ``text`` that are not inside a fenced code block."""
    lines, fence = [], None
    for line in text.splitlines():
        marker = _FENCE.match(line)
        if marker and (fence is None or marker.group(1) == fence):
            fence = None if fence else marker.group(1)
            continue
        if fence is None:
            lines.append(line)
    return lines


def _prose(text: str) -> str:
    """Markdown with code blocks, code spans and HTML comments removed: what can hold a live link."""
    text = _COMMENT.sub("", text)
    return _CODE_SPAN.sub("code", "\n".join(_outside_fences(text)))


def links(text: str) -> list[str]:
    """Every link and picture target of a Markdown text: inline, reference definitions and HTML tags."""
    prose = _prose(text)
    return [*_INLINE_LINK.findall(prose), *_REFERENCE_DEF.findall(prose), *_HTML_LINK.findall(prose)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower-cased, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)  # a link's or picture's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a Markdown text's headings, duplicates numbered as GitHub does (``x``, ``x-1``, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(_COMMENT.sub("", text)):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, repo: Path = REPO, pending: set[str] = frozenset()) -> list[str]:
    """The relative links of ``page`` that do not resolve, each with the reason."""
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if not target or _SCHEME.match(target):
            continue  # web addresses are not checked: the test is offline
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page.resolve()
        try:
            shown = resolved.relative_to(repo.resolve()).as_posix()
        except ValueError:
            problems.append(f"{target}: outside the repository")
            continue
        if not resolved.exists():
            if shown not in pending:
                problems.append(f"{target}: no file {shown}")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading #{anchor} in {shown}")
    return problems


# ---------------------------------------------------------------- the checker itself


def test_slugs_follow_githubs_rules():
    assert slug("Two commands") == "two-commands"
    assert slug("What a model sees: `FeatureConfig`") == "what-a-model-sees-featureconfig"
    assert slug("Writing the genre into the files' tags") == "writing-the-genre-into-the-files-tags"
    assert slug("Extra features: contrast, harmonic / percussive") == "extra-features-contrast-harmonic--percussive"
    assert slug("**Bold** and [a link](x.md)") == "bold-and-a-link"
    assert slug("snake_case stays") == "snake_case-stays"
    assert anchors("# A\n\n## A\n\n```\n# not a heading\n```\n## A\n") == {"a", "a-1", "a-2"}


def test_the_checker_finds_broken_links_and_ignores_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# Present\n\n## Sub part\n")
    (tmp_path / "pic.png").write_bytes(b"png")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/there.md) [ok](docs/there.md#sub-part) ![ok](pic.png) [web](https://example.org/x)\n"
        "[gone](docs/gone.md) [bad anchor](docs/there.md#absent) ![gone](nope.png) [up](../../etc/passwd)\n"
        "[self](#nowhere) <img src=\"missing.png\">\n[ref]: docs/missing-ref.md\n"
        "`[in code](docs/code.md)`\n```\n[in a block](docs/block.md)\n```\n<!-- [hidden](docs/hidden.md) -->\n"
        "[pending](docs/later.md)\n")
    problems = broken_links(page, repo=tmp_path, pending={"docs/later.md"})
    assert sorted(p.split(":")[0] for p in problems) == sorted([
        "docs/gone.md", "docs/there.md#absent", "nope.png", "../../etc/passwd", "#nowhere", "missing.png",
        "docs/missing-ref.md"])


# ---------------------------------------------------------------- the real pages


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_picture_resolves(page):
    assert broken_links(page, pending=PENDING) == []


def test_pending_targets_are_still_pending_and_linked():
    """Each allowed-missing target is really missing (else it must leave :data:`PENDING`) and really linked."""
    for target in PENDING:
        assert not (REPO / target).exists(), f"{target} exists now: remove it from PENDING in {__file__}"
    linked = {(page.parent / t.partition("#")[0]).resolve() for page in pages() for t in links(page.read_text())
              if t and not _SCHEME.match(t) and t.partition("#")[0]}
    assert {(REPO / t).resolve() for t in PENDING} <= linked


def test_readme_is_a_short_guide():
    size = len(README.read_bytes())
    assert size < README_LIMIT_BYTES, f"README.md is {size} bytes; move detail to docs/ (limit {README_LIMIT_BYTES})"


def test_every_docs_page_and_picture_can_be_reached():
    index = DOCS / "README.md"
    assert "docs/README.md" in links(README.read_text())
    from_index = {t.partition("#")[0] for t in links(index.read_text())}
    for page in DOCS.glob("*.md"):
        if page != index:
            assert page.name in from_index, f"docs/README.md does not link {page.name}"
    shown = {(page.parent / t.partition("#")[0]).resolve() for page in pages() for t in links(page.read_text())}
    for picture in DOCS.glob("*.png"):
        assert picture.resolve() in shown, f"no page shows {picture.name}"
    assert "docs/screenshot.png" in links(README.read_text())


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_readme_two_commands_are_what_ci_and_a_new_user_run():
    section = _readme_section("Two commands")
    blocks = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert blocks == [APP_COMMAND, TEST_COMMAND]
    # CI (.ci/run) installs the same requirements and runs the same test command (as python3)
    ci = (REPO / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert any(re.search(r"\bpip install\b.*-r requirements\.txt\b", line) for line in ci_lines)
    test_part = TEST_COMMAND.split("&& ", 1)[1]
    assert any(re.match(rf"{re.escape(test_part.replace('python ', 'python3 ', 1))}(\s|$)", line)
               for line in ci_lines), f".ci/run no longer runs `{test_part}`"
    # a new user's install gives both programs, and the app's entry point is where the command says
    requirements = (REPO / "requirements.txt").read_text().lower()
    names = {re.split(r"[\s<>=!~;\[#]", line.strip(), maxsplit=1)[0] for line in requirements.splitlines()}
    assert {"streamlit", "pytest"} <= names
    assert (REPO / "app.py").is_file()
    # the tests page shows the same command
    assert TEST_COMMAND in (DOCS / "testing.md").read_text()


# ---------------------------------------------------------------- how packages are named

#: A package registry's web address; a package is named by its name and version ("musicnn 0.1.0 from PyPI").
_REGISTRY_ADDRESS = re.compile(r"pypi\.org|pypi\.python\.org|pythonhosted\.org|anaconda\.org|npmjs\.com", re.I)
_TEXT_SUFFIXES = {".py", ".md", ".json", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".csv"}


def _project_text_files(root: Path):
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") or p in {"runs", "node_modules", "__pycache__"} for p in parts[:-1]):
            continue
        if path.is_file() and (path.suffix in _TEXT_SUFFIXES or path.name in {"run", "Makefile"}):
            yield path


def test_packages_are_named_by_name_and_version_not_by_a_registry_address(tmp_path):
    registry_page = "https://" + "pypi" + ".org/project/x/1.0/"  # spelt in pieces so this file passes its own test
    (tmp_path / "m.json").write_text('{"package": "x 1.0 (%s)"}' % registry_page)
    (tmp_path / "ok.md").write_text("musicnn 0.1.0 from PyPI, source https://github.com/jordipons/musicnn\n")
    assert [p.name for p in _project_text_files(tmp_path)
            if _REGISTRY_ADDRESS.search(p.read_text(encoding="utf-8"))] == ["m.json"]

    found = []
    for path in _project_text_files(REPO):
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in _REGISTRY_ADDRESS.finditer(text)]
    assert found == []
