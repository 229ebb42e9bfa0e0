"""Whether a result page or figure was made by the package code of today.

Every page in ``benchmarks/results`` names the commits its rows come from (the
header line "rows from commits: ..." or "commit of this run: ..."), and every
figure in ``docs/figures`` carries the commit that drew it in a PNG text
chunk (:func:`stamp_png`, written by ``python -m benchmarks.figures`` and the
speed benchmark). A page or figure is *current* when the package code
(``sklearn_flowod/``) has not changed since any of its commits, or when
``python -m benchmarks.same_scores`` found that the package code of its
commit and today's give every default score bit for bit (:func:`certified`).

The documentation build runs this module as an MkDocs hook
(``hooks:`` in ``mkdocs.yml``): :func:`on_page_markdown` puts a note on every
page that includes a result file, or shows a figure, made with an earlier
version of the package, so that nobody reads old numbers as today's. It uses
the standard library only, as MkDocs loads it by its path.
"""

from __future__ import annotations

import csv
import functools
import re
import struct
import subprocess
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The folder whose changes make a page or figure out of date.
PACKAGE = "sklearn_flowod"
#: The PNG text chunk that holds a figure's commit.
PNG_KEY = "Commit"
TITLE = "Made with an earlier version of the package"

_SNIPPET = re.compile(r'--8<-- "(benchmarks/results/[^":]+\.md)')
_FIGURE = re.compile(r"!\[[^\]]*\]\(((?:\.\./)*figures/[^)\s]+\.png)\)")
_ROWS = re.compile(r"^- rows from commits: (.*)$", re.MULTILINE)
_RUN = re.compile(r"^- commit(?: of this run)?: (\S+)", re.MULTILINE)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def recorded_commits(path: Path) -> list[str]:
    """The commits a result page's rows, or a figure, were made at (as recorded)."""
    path = Path(path)
    if path.suffix == ".png":
        commits = png_text(path).get(PNG_KEY, "")
        return [commit for commit in commits.split(",") if commit]
    text = path.read_text()
    rows = _ROWS.search(text)
    if rows:  # "a1b2c3d (12 rows), unknown (3 rows); unknown: kept from ..."
        listed = rows.group(1).split(";")[0]
        return [item.strip().split(" ")[0] for item in listed.split(",") if item.strip()]
    run = _RUN.search(text)
    return [run.group(1)] if run else []


#: The certificates of ``python -m benchmarks.same_scores``.
SAME_SCORES = ROOT / "benchmarks" / "results" / "same_scores.csv"


@functools.cache
def score_classes(path: Path = SAME_SCORES) -> dict[str, str]:
    """Package trees (git tree hashes of ``sklearn_flowod/``) -> a representative of
    the trees ``path`` (:data:`SAME_SCORES`) found to give the same default scores,
    from a clean tree; equal scores being an equivalence, comparisons chain."""
    parent: dict[str, str] = {}

    def root(tree: str) -> str:
        while parent.setdefault(tree, tree) != tree:
            tree = parent[tree]
        return tree

    if path.exists():
        with path.open(newline="") as rows:
            for row in csv.DictReader(rows):
                trees = (package_tree(row["commit"]), package_tree(row["against"]))
                if row["equal"] == "True" and row["dirty"] == "False" and None not in trees:
                    parent[root(trees[0])] = root(trees[1])
    return {tree: root(tree) for tree in parent}


@functools.cache
def package_tree(commit: str) -> str | None:
    """The git tree hash of the package code at ``commit`` (None if unknown)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", f"{commit}:{PACKAGE}"],
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def certified(commit: str, path: Path = SAME_SCORES) -> bool:
    """Whether ``path`` certifies that the package code of ``commit`` gives the
    default scores of today's (``HEAD``) bit for bit."""
    classes = score_classes(path)
    tree, today = package_tree(commit), package_tree("HEAD")
    return tree in classes and classes[tree] == classes.get(today)


@functools.cache
def package_changes_since(commit: str) -> tuple[str, ...] | None:
    """The commits that changed the package code after ``commit`` (newest first);
    None when ``commit`` is not a commit of this repository's history."""
    git = ["git", "-C", str(ROOT)]
    try:
        subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                       capture_output=True, check=True)
        out = subprocess.run([*git, "log", "--format=%h", f"{commit}..HEAD", "--", PACKAGE],
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return tuple(out.stdout.split())


def out_of_date(path: Path) -> str | None:
    """Why ``path`` does not describe the current package code, or None if it does."""
    commits = recorded_commits(path)
    if not commits:
        return "it records no commit it was made at"
    reasons = []
    for commit in dict.fromkeys(commits):
        if commit.endswith("+uncommitted"):
            reasons.append(f"made at {commit}, with uncommitted changes")
            continue
        changes = package_changes_since(commit)
        if changes and certified(commit):
            continue
        if changes is None:
            reasons.append(f"made at {commit}, not a commit of this repository's history")
        elif changes:
            n = len(changes)
            reasons.append(f"made at {commit}; the package code has changed since, in {n} "
                           f"commit{'s' if n > 1 else ''} (the latest {changes[0]})")
    return "; ".join(reasons) or None


def note(name: str, reason: str) -> str:
    """The warning the documentation shows above an out-of-date page or figure."""
    return (f'!!! warning "{TITLE}"\n'
            f"    `{name}`: {reason}. Its numbers may not describe the current package; "
            "rerun the command that made it to refresh them.\n")


def on_page_markdown(markdown: str, page=None, config=None, files=None, **kwargs) -> str:
    """MkDocs hook: a note on top for each out-of-date included result file, and one
    below each out-of-date figure."""
    docs_dir = Path(page.file.abs_src_path).parent if page is not None else ROOT / "docs"
    notes = []
    for name in dict.fromkeys(_SNIPPET.findall(markdown)):
        reason = out_of_date(ROOT / name)
        if reason:
            notes.append(note(name, reason))

    def figure_note(match: re.Match) -> str:
        path = (docs_dir / match.group(1)).resolve()
        reason = out_of_date(path) if path.exists() else None
        if not reason:
            return match.group(0)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        return f"{match.group(0)}\n\n{note(str(shown), reason)}"

    markdown = _FIGURE.sub(figure_note, markdown)
    if not notes:
        return markdown
    lines = markdown.split("\n")
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "\n".join([*lines[:at], "", *notes, *lines[at:]])


def png_text(path: Path) -> dict[str, str]:
    """The text chunks (``tEXt``) of a PNG file."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    chunks, at = {}, len(_PNG_SIGNATURE)
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"tEXt":
            key, _, value = data[at + 8:at + 8 + length].partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return chunks


def stamp_png(path: Path, commit: str) -> None:
    """Record ``commit`` in a PNG file's text chunk :data:`PNG_KEY` (replacing one there)."""
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    kept, at = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunk = data[at:at + 12 + length]
        at += 12 + length
        if kind == b"tEXt" and chunk[8:].startswith(PNG_KEY.encode() + b"\0"):
            continue
        if kind == b"IEND":
            body = b"tEXt" + PNG_KEY.encode() + b"\0" + commit.encode("latin-1")
            kept.append(struct.pack(">I", len(body) - 4) + body
                        + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF))
        kept.append(chunk)
    Path(path).write_bytes(b"".join(kept))
