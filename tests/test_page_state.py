"""Result pages and figures say when an earlier version of the package made them."""

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import page_state

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _stale(commit: str) -> bool:
    """Computed here from git alone: was the package code changed after ``commit``?"""
    if commit.endswith("+uncommitted") or _git("cat-file", "-e", f"{commit}^{{commit}}").returncode:
        return True
    changed = _git("log", "--format=%h", f"{commit}..HEAD", "--", "sklearn_flowod")
    # package code certified to give today's default scores bit for bit does not count
    return bool(changed.stdout.strip()) and not page_state.certified(commit)


def _rendered(doc: Path) -> str:
    page = SimpleNamespace(file=SimpleNamespace(abs_src_path=str(doc)))
    return page_state.on_page_markdown(doc.read_text(), page=page)


DOC_PAGES = sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("doc", DOC_PAGES, ids=[str(p.relative_to(DOCS)) for p in DOC_PAGES])
def test_every_shown_result_and_figure_is_labelled_exactly_when_it_is_out_of_date(doc):
    text = doc.read_text()
    rendered = _rendered(doc)
    shown = [ROOT / name for name in re.findall(r'--8<-- "(benchmarks/results/[^":]+\.md)', text)]
    shown += [(doc.parent / name).resolve()
              for name in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text)]
    for path in shown:
        commits = page_state.recorded_commits(path)
        assert commits, f"{path.relative_to(ROOT)} records no commit"
        labelled = f"`{path.relative_to(ROOT)}`: " in rendered
        assert labelled == any(_stale(commit) for commit in commits), path.relative_to(ROOT)
    assert (page_state.TITLE in rendered) == any(
        any(_stale(c) for c in page_state.recorded_commits(p)) for p in shown)


def test_a_page_of_the_current_package_code_gets_no_label(tmp_path):
    head = _git("rev-parse", "--short", "HEAD").stdout.strip()
    page = tmp_path / "page.md"
    page.write_text(f"# A study\n\n- rows from commits: {head} (4 rows)\n")
    assert page_state.recorded_commits(page) == [head]
    assert page_state.out_of_date(page) is None
    page.write_text(f"# A study\n\n- rows from commits: {head} (4 rows), {head}+uncommitted "
                    "(1 row), unknown (2 rows); unknown: kept from an older file\n")
    assert page_state.recorded_commits(page) == [head, f"{head}+uncommitted", "unknown"]
    reason = page_state.out_of_date(page)
    assert "with uncommitted changes" in reason and "unknown, not a commit" in reason


def test_a_page_or_figure_older_than_the_last_package_change_is_labelled(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    changes = _git("log", "--format=%h", "--", "sklearn_flowod").stdout.split()
    # package code before the latest change, and not certified to score as today's
    older = [commit for commit in changes[1:] if not page_state.certified(commit)]
    if not older:
        pytest.skip("a clone without the package's history")
    changes[1] = older[0]
    page = tmp_path / "page.md"
    page.write_text(f"# Old\n\n- commit of this run: {changes[1]}\n")
    assert f"the latest {changes[0]}" in page_state.out_of_date(page)
    # a figure drawn then, shown by a doc page: the note follows the image
    (tmp_path / "figures").mkdir()
    fig, ax = plt.subplots()
    fig.savefig(tmp_path / "figures" / "old.png")
    plt.close(fig)
    page_state.stamp_png(tmp_path / "figures" / "old.png", changes[1])
    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n\n![An old figure](figures/old.png)\n\n*Its caption.*\n")
    rendered = _rendered(doc).split("\n")
    at = rendered.index("![An old figure](figures/old.png)")
    assert rendered[at + 2] == f'!!! warning "{page_state.TITLE}"'
    assert f"made at {changes[1]}; the package code has changed since" in rendered[at + 3]


def test_a_figure_carries_its_commit_and_a_new_stamp_replaces_the_old(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "figure.png"
    fig.savefig(path)
    plt.close(fig)
    assert page_state.recorded_commits(path) == []
    assert page_state.out_of_date(path) == "it records no commit it was made at"
    page_state.stamp_png(path, "abc1234")
    page_state.stamp_png(path, "abc1234,def5678")
    assert page_state.png_text(path)["Commit"] == "abc1234,def5678"
    assert page_state.recorded_commits(path) == ["abc1234", "def5678"]
    image = plt.imread(path)  # still a valid PNG
    assert image.ndim == 3 and np.isfinite(image).all()


def test_every_result_page_is_reachable_from_the_docs_and_no_part_file_is_left():
    linked = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    for page in sorted(RESULTS.glob("*.md")):
        assert f"benchmarks/results/{page.name}" in linked, f"{page.name} is in no doc page"
        # the parts of a merged run (part_a, _a, old1, new2, ...) go once merged
        assert not re.search(r"_(part_?[a-z0-9]+|[ab]|old\d+|new\d+)$", page.stem), page.name


def test_only_a_clean_equal_comparison_certifies_older_package_code(tmp_path):
    changes = _git("log", "--format=%H", "--", "sklearn_flowod").stdout.split()
    older, oldest = f"{changes[0]}^", f"{changes[1]}^"  # package code other than today's
    head = _git("rev-parse", "--short", "HEAD").stdout.strip()
    rows = {"certified": (older, "False", "True"), "dirty tree": (older, "True", "True"),
            "scores differ": (older, "False", "False"), "other code": (oldest, "False", "True")}
    for case, (against, dirty, equal) in rows.items():
        path = tmp_path / f"{case}.csv"
        path.write_text("commit,against,dirty,models,equal,differing\n"
                        f"{head},{against},{dirty},18,{equal},\n")
        assert page_state.certified(older, path) == (case == "certified"), case
    # comparisons chain: today's code against a middle one, the middle one against older
    middle = _git("rev-parse", "--short", f"{changes[0]}").stdout.strip()
    path = tmp_path / "chain.csv"
    path.write_text("commit,against,dirty,models,equal,differing\n"
                    f"{head},{middle},False,18,True,\n{middle},{older},False,18,True,\n")
    assert page_state.certified(older, path)
