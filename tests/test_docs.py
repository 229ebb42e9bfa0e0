"""The documentation's code runs as written, and its figures are in place."""

import math
import re
from pathlib import Path

import pytest
import sklearn

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: Pages whose ```python blocks run, in order, as one script. Blocks fenced as
#: ```py are illustrations that need what the test machine lacks (a GPU, a cluster).
EXECUTED_PAGES = ["index.md", "auxiliary_data.md", "thresholds.md", "devices.md",
                  "known_anomalies.md"]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a page saves (joblib) land here
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python block"
    namespace: dict = {"__name__": "docs_page"}
    with sklearn.config_context():  # a page may switch on metadata routing
        for block in blocks:
            exec(compile(block, str(DOCS / page), "exec"), namespace)
    if page == "index.md":  # fitted in a pipeline, scored new rows, saved and loaded
        assert set(namespace["labels"]) <= {-1, 1}
        assert namespace["normality"].shape == namespace["y_test"].shape
        assert (tmp_path / "fraud_model.joblib").exists()


def test_every_figure_is_shown_and_small():
    pages = "".join(page.read_text() for page in DOCS.rglob("*.md"))
    figures = sorted((DOCS / "figures").glob("*.png"))
    assert figures
    for figure in figures:
        assert f"figures/{figure.name}" in pages, f"{figure.name} is on no page"
        assert figure.stat().st_size < 200_000, f"{figure.name} is larger than 200 KB"


#: A measured number written by hand: a time ("3.5 s", "120 ms") or a score with
#: three or more decimals ("0.006", "0.913"); such numbers go stale, the generated
#: result files (benchmarks/results/, included in docs/benchmarks/) do not.
HAND_WRITTEN_MEASUREMENT = re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms|seconds)\b|\b0\.\d{3,}\b")


def _detector_docstrings():
    import inspect

    import sklearn_flowod
    from sklearn_flowod.base import BaseDeepDetector

    for name in sklearn_flowod.__all__:
        obj = getattr(sklearn_flowod, name)
        if inspect.isclass(obj) and issubclass(obj, BaseDeepDetector):
            yield name, inspect.getdoc(obj)


@pytest.mark.parametrize("name,doc", list(_detector_docstrings()))
def test_detector_docstrings_quote_no_measurements(name, doc):
    doc = doc.split("Examples\n--------", 1)[0]  # doctest outputs are checked, not quoted
    assert not HAND_WRITTEN_MEASUREMENT.findall(doc), name


def test_the_devices_page_restates_no_private_constants():
    page = (DOCS / "devices.md").read_text()
    assert "sklearn_flowod._" not in page
    # the package's constants (CPU_MAX_ROWS and the like); environment variables are fine
    constants = set(re.findall(r"\b[A-Z]+(?:_[A-Z]+)+\b", page)) - {"CUDA_VISIBLE_DEVICES"}
    assert not constants
    assert not HAND_WRITTEN_MEASUREMENT.findall(page)


def _deviation_rows():
    page = (DOCS / "deviations.md").read_text()
    table = page.split("## Where each detector deviates from its paper\n", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert rows[0].startswith("| detector | paper |") and set(rows[1]) <= set("|-")
    return rows[2:]


def test_the_deviations_page_is_in_the_navigation_and_covers_every_detector():
    import sklearn_flowod

    assert "deviations.md" in (DOCS.parent / "mkdocs.yml").read_text()
    named = {name for row in _deviation_rows() for name in re.findall(r"`(\w+Detector)`", row)}
    detectors = {name for name, _ in _detector_docstrings()}
    assert detectors <= named, detectors - named
    assert set(sklearn_flowod.__all__) >= named


def test_the_deviations_page_quotes_the_current_defaults():
    import inspect

    import sklearn_flowod

    inn_detectors = ["FlowDetector", "ContrastiveFlowDetector", "LikelihoodRatioDetector",
                     "InvertibleOneClassDetector"]
    checked = 0
    for row in _deviation_rows():
        cells = row.split(" | ")
        names = re.findall(r"`(\w+Detector)`", cells[0])
        if "four detectors built on invertible networks" in cells[0]:
            names = inn_detectors
        assert names, row
        for name in names:
            defaults = getattr(sklearn_flowod, name)().get_params()
            for parameter, value in re.findall(r"`(\w+)=([^`]+)`", cells[2]):
                if parameter in defaults:
                    assert repr(defaults[parameter]) == value or str(
                        defaults[parameter]) == value.strip('"'), (name, parameter, value)
                    checked += 1
    assert checked >= 20, checked
    # the rows that state constants of the code rather than parameters
    from sklearn_flowod.detectors import contrastive_flow

    source = inspect.getsource(contrastive_flow.ContrastiveFlowDetector._auto_clamp)
    assert "quantile(" in source and "+ self.clamp_offset" in source
    assert math.isclose(sklearn_flowod.ContrastiveFlowDetector().clamp_offset, -math.log(10.0))
    clamp_row = next(row for row in _deviation_rows() if "`clamp=\"auto\"`" in row)
    assert "**minus** `ln 10`" in clamp_row and "**plus**" in clamp_row  # code and paper
    assert sklearn_flowod.InvertibleOneClassDetector._input_divisor == 3.0
    assert "divided by 3" in "".join(_deviation_rows())


def test_the_deviations_page_links_to_existing_pages():
    page = (DOCS / "deviations.md").read_text()
    links = re.findall(r"\]\(([^)#]+)", page)
    assert links
    for link in links:
        assert (DOCS / link).is_file(), link
