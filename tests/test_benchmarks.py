"""The measuring tools of the speed benchmark and a smoke run of the quality runner."""

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from benchmarks import adbench
from benchmarks.instrumented_fit import instrumented_fit
from sklearn_flowod import (
    ContrastiveFlowDetector,
    FlowDetector,
    LikelihoodRatioDetector,
)

SMALL = {"n_blocks": 2, "hidden_size": 16, "device": "cpu", "random_state": 0,
         "validation_fraction": None}


def test_instrumented_fit_times_the_main_loop_and_scores_every_epoch():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 3))
    X_test = np.r_[rng.normal(size=(100, 3)), rng.normal(loc=5.0, size=(20, 3))]
    y_test = np.r_[np.zeros(100), np.ones(20)]
    start = time.perf_counter()
    record = instrumented_fit(FlowDetector(max_epochs=4, **SMALL), X,
                              evaluation=(X_test, y_test))
    wall = time.perf_counter() - start
    assert record.n_epochs == 4 and record.n_samples_seen == 4 * 600
    # the four AUROC checks are the benchmark's, not the fit's
    assert record.instrumentation_s > 0
    assert record.fit_s + record.instrumentation_s <= wall
    assert [epoch for epoch, _, _ in record.curve] == [1, 2, 3, 4]
    seconds = [s for _, s, _ in record.curve]
    assert seconds == sorted(seconds) and seconds[-1] <= record.train_s <= record.fit_s
    assert record.curve[-1][2] > 0.9


def test_instrumented_fit_measures_the_detector_not_its_inner_fits():
    X = np.random.RandomState(0).normal(size=(400, 3))
    record = instrumented_fit(LikelihoodRatioDetector(max_epochs=2, **SMALL), X)
    # the general flow is fitted on as many generated rows, inside fit: the record
    # belongs to the in-distribution flow's loop (one timing)
    assert record.n_samples_seen == 2 * 400 and record.n_epochs == 2
    assert record.samples_per_s > 0


def test_instrumented_fit_leaves_the_warm_up_out_of_the_main_loop():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(256, 3))
    X_test = np.r_[rng.normal(size=(50, 3)), rng.normal(loc=5.0, size=(10, 3))]
    y_test = np.r_[np.zeros(50), np.ones(10)]
    # clamp="auto": a maximum-likelihood warm-up of 2 epochs in _before_training
    detector = ContrastiveFlowDetector(max_epochs=4, warm_up_fraction=0.5, batch_size=64,
                                       **SMALL)
    record = instrumented_fit(detector, X, evaluation=(X_test, y_test))
    assert record.n_epochs == detector.n_epochs_ == 4
    assert record.n_samples_seen == 4 * 256
    assert [epoch for epoch, _, _ in record.curve] == [1, 2, 3, 4]
    assert "_before_training" not in vars(detector)  # the detector is left as it was


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_split_follows_the_protocol(seed):
    split = adbench.load_split(adbench.SYNTHETIC, seed)
    assert set(np.unique(split.y_test)) == {0, 1}
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0.0, atol=1e-9)
    assert split.X_train.shape[1] == split.X_test.shape[1] == 14


def test_the_default_fit_process_gets_the_users_thread_variables(monkeypatch):
    from benchmarks.speed import THREAD_VARIABLES, _user_environment

    for variable in THREAD_VARIABLES:  # as main sets them for --threads 1
        monkeypatch.setenv(variable, "1")
    env = _user_environment({"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": "4"})
    assert "OMP_NUM_THREADS" not in env and env["MKL_NUM_THREADS"] == "4"


def test_default_fits_alternate_with_isolation_forest(monkeypatch):
    from types import SimpleNamespace

    from benchmarks import default_fit

    order = []

    def fake_fit(estimator, X, limit_s=None):
        order.append(estimator.name)
        return estimator.seconds, "", False

    monkeypatch.setattr(default_fit, "_fit", fake_fit)
    iforest_seconds = iter([1.0, 3.0, 5.0])
    rows = default_fit.alternating_fits(
        np.zeros((4, 2)),
        {"A": lambda: SimpleNamespace(name="A", seconds=10.0),
         "B": lambda: SimpleNamespace(name="B", seconds=20.0)},
        lambda: SimpleNamespace(name="IF", seconds=next(iforest_seconds)))
    assert order == ["IF", "A", "IF", "B", "IF"]
    # each detector's IsolationForest time: the median of the fits around it
    assert [(r["detector"], r["iforest_fit_s"], r["ratio"]) for r in rows] == [
        ("A", 2.0, 5.0), ("B", 4.0, 5.0)]


def test_repeated_default_fits_take_the_median_of_each_detector(monkeypatch):
    from types import SimpleNamespace

    from benchmarks import default_fit

    order = []

    def fake_fit(estimator, X, limit_s=None):
        order.append(estimator.name)
        return estimator.seconds(), "", False

    monkeypatch.setattr(default_fit, "_fit", fake_fit)
    detector_seconds = iter([10.0, 40.0, 12.0])  # one descheduled fit among three
    rows = default_fit.alternating_fits(
        np.zeros((4, 2)), {"A": lambda: SimpleNamespace(name="A",
                                                        seconds=lambda: next(detector_seconds))},
        lambda: SimpleNamespace(name="IF", seconds=lambda: 1.0), repeats=3)
    assert order == ["IF", "A", "IF", "A", "IF", "A", "IF"]
    assert rows[0]["fit_s"] == 12.0 and rows[0]["ratio"] == 12.0 and rows[0]["repeats"] == 3


def test_busy_cores_stops_its_workers_also_on_errors(monkeypatch):
    from benchmarks import default_fit

    monkeypatch.setattr(default_fit, "BUSY_RAMP_S", 0.0)
    with pytest.raises(RuntimeError), default_fit.busy_cores(1) as workers:
        assert len(workers) == 1 and workers[0].poll() is None
        raise RuntimeError
    assert workers[0].poll() is not None


def test_a_default_fit_past_its_limit_is_stopped_and_flagged():
    from types import SimpleNamespace

    from benchmarks.default_fit import _fit

    def slow_fit(X):
        time.sleep(60)

    start = time.perf_counter()
    seconds, error, timed_out = _fit(SimpleNamespace(fit=slow_fit), None, limit_s=0.2)
    assert timed_out and error == "" and math.isnan(seconds)
    assert time.perf_counter() - start < 30
    seconds, error, timed_out = _fit(SimpleNamespace(fit=lambda X: None), None, limit_s=5.0)
    assert not timed_out and error == "" and seconds < 5.0
    time.sleep(0.1)  # no alarm is left behind


def test_a_slowdown_statistic_is_marked_where_a_stopped_fit_can_change_it():
    import pandas as pd

    from benchmarks.speed import _bounded

    values = pd.Series([1.0, 2.0, 3.0, 10.0])
    stopped = pd.Series([False, False, False, True])
    assert _bounded(values, stopped, "median") == "2.50"
    assert _bounded(values, stopped, "max") == "≥ 10.00"
    stopped = pd.Series([False, False, True, False])
    assert _bounded(values, stopped, "median") == "≥ 2.50"


RESULT_CSV = """dataset,detector,seed,auroc,ap,inlier_rate,fit_s,score_s,commit,dirty
a,FlowDetector,0,0.9,0.5,0.9,1.0,0.1,abc1234,False
b,FlowDetector,0,0.8,0.4,0.9,1.0,0.1,abc1234,False
a,IsolationForest,0,0.7,0.3,0.9,0.1,0.1,def5678,True
b,IsolationForest,0,0.6,0.2,0.9,0.1,0.1,def5678,False
"""


def test_the_quality_report_names_every_commit_of_its_rows_and_flags_dirty_ones(tmp_path):
    from benchmarks import quality

    (tmp_path / "mixed.csv").write_text(RESULT_CSV)
    quality.main(["--from-csv", "--name", "mixed", "--out-dir", str(tmp_path)])
    page = (tmp_path / "mixed.md").read_text()
    assert ("- rows from commits: abc1234 (2 rows), def5678+uncommitted (1 row), "
            "def5678 (1 row)") in page
    assert ("WARNING: 1 row was made with uncommitted changes: IsolationForest at "
            "def5678 (1)") in page
    # the column holding the dirty row is marked, the clean detector's is not
    assert "| dataset | FlowDetector | IsolationForest † |" in page


def test_the_quality_runner_merges_earlier_files_without_running_anything(tmp_path):
    # --from-csv with --include: the parts' rows, with their own commits, make the file
    from benchmarks import quality

    lines = RESULT_CSV.splitlines()
    (tmp_path / "part1.csv").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "part2.csv").write_text("\n".join([lines[0], *lines[3:]]) + "\n")
    merged = quality.main(["--from-csv", "--include", "part1", "part2", "--name", "all",
                           "--out-dir", str(tmp_path)])
    assert len(merged) == 4
    written = pd.read_csv(tmp_path / "all.csv")
    assert sorted(written["commit"]) == ["abc1234", "abc1234", "def5678", "def5678"]
    assert "- rows from commits: abc1234 (2 rows)" in (tmp_path / "all.md").read_text()


def test_a_page_on_some_detectors_takes_their_rows_of_a_larger_table(tmp_path):
    from benchmarks import quality

    (tmp_path / "all.csv").write_text(RESULT_CSV)
    page = quality.main(["--from-csv", "--include", "all", "--name", "page", "--datasets", "a",
                         "--detectors", "FlowDetector", "--out-dir", str(tmp_path)])
    assert list(zip(page["dataset"], page["detector"], strict=True)) == [("a", "FlowDetector")]
    assert "IsolationForest" not in (tmp_path / "page.md").read_text()


def test_rows_kept_from_earlier_files_keep_their_commits_or_say_unknown():
    import io

    import pandas as pd

    from benchmarks import report

    rows = report.kept(pd.read_csv(io.StringIO(RESULT_CSV)))
    assert list(rows["commit"]) == ["abc1234", "abc1234", "def5678", "def5678"]
    assert list(rows["dirty"]) == [False, False, True, False]
    # a file older than the columns; an older commit column with its dirty suffix
    old = report.kept(pd.DataFrame({"section": ["a", "b", "c"],
                                    "commit": ["e18ea6f", None, "e18ea6f+uncommitted"]}))
    assert list(old["commit"]) == ["e18ea6f", report.UNKNOWN, "e18ea6f"]
    assert list(old["dirty"]) == [False, None, True]
    lines = report.provenance(old, "section")
    assert "e18ea6f (1 row), unknown (1 row), e18ea6f+uncommitted (1 row)" in lines
    assert "WARNING: 1 row was made with uncommitted changes: c at e18ea6f (1)" in lines
    bare = report.kept(pd.DataFrame({"detector": ["A"]}))
    assert list(bare["commit"]) == [report.UNKNOWN] and list(bare["dirty"]) == [None]


def test_rows_made_now_record_this_runs_commit(monkeypatch):
    import pandas as pd

    from benchmarks import report

    monkeypatch.setattr(report, "this_run", lambda: ("1234abc", True))
    # a helper process's rows name their own commit
    rows = report.stamped(pd.DataFrame({"section": ["speed", "default_fit"],
                                        "commit": [None, "fedcba9"], "dirty": [None, False]}))
    assert list(rows["commit"]) == ["1234abc", "fedcba9"]
    assert list(rows["dirty"]) == [True, False]
    clean = report.stamped(pd.DataFrame({"detector": ["A"]}))
    assert list(clean["commit"]) == ["1234abc"] and list(clean["dirty"]) == [True]
    assert "WARNING" not in report.provenance(clean.assign(dirty=False), "detector")


def test_the_quality_runner_writes_its_tables(tmp_path, capsys):
    # a smoke run of `python -m benchmarks.quality` in seconds: the package's synthetic
    # table (no ADBench files needed), one seed, a peer and a package detector at its
    # default budget
    from benchmarks import quality

    results = quality.main(["--datasets", adbench.SYNTHETIC, "--detectors", "IsolationForest",
                            "FlowDetector", "--seeds", "0", "--name", "smoke",
                            "--out-dir", str(tmp_path)])
    assert sorted(results["detector"]) == ["FlowDetector", "IsolationForest"]
    assert set(results["dataset"]) == {adbench.SYNTHETIC} and set(results["seed"]) == {0}
    assert results["auroc"].between(0.8, 1.0).all()  # both detect the synthetic frauds
    assert (results["fit_s"] > 0).all()
    written = pd.read_csv(tmp_path / "smoke.csv")
    assert sorted(written["detector"]) == ["FlowDetector", "IsolationForest"]
    table = (tmp_path / "smoke.md").read_text()
    assert "python -m benchmarks.quality --datasets" in table
    assert "FlowDetector" in table and "IsolationForest" in table
    assert "AUROC 0." in capsys.readouterr().out


def test_the_ablation_runner_summarises_every_setting(tmp_path):
    # `python -m benchmarks.ablation` on the synthetic table: two settings of one
    # detector, each a column of the tables and a row of the summary
    from benchmarks import ablation

    results = ablation.main(["DeepSVDDDetector", "--settings", "{}", '{"max_epochs": 2}',
                             "--datasets", adbench.SYNTHETIC, "--seeds", "0",
                             "--contaminated", "--name", "ablation", "--out-dir", str(tmp_path)])
    assert sorted(results["detector"]) == ["DeepSVDDDetector()",
                                           "DeepSVDDDetector(max_epochs=2)"]
    summary = (tmp_path / "ablation.md").read_text().split("## Summary")[1].split("##")[0]
    assert "contaminated search AUROC" in summary
    assert summary.count("| DeepSVDDDetector(") == 2


def test_ablation_parts_run_apart_are_summarised_together(tmp_path):
    # two settings run as parts (e.g. one per core), then one summary of both
    from benchmarks import ablation

    common = ["--datasets", adbench.SYNTHETIC, "--seeds", "0", "--out-dir", str(tmp_path)]
    ablation.main(["DeepSVDDDetector", "--settings", '{"max_epochs": 1}', "--name", "a", *common])
    ablation.main(["DeepSVDDDetector", "--settings", '{"max_epochs": 2}', "--name", "b", *common])
    both = ablation.main(["DeepSVDDDetector", "--include", "a", "b", "--name", "ab", *common])
    assert sorted(both["detector"]) == ["DeepSVDDDetector(max_epochs=1)",
                                        "DeepSVDDDetector(max_epochs=2)"]
    assert (tmp_path / "ab.md").read_text().count("| DeepSVDDDetector(max_epochs=") >= 4
    with pytest.raises(SystemExit):
        ablation.main(["DeepSVDDDetector", "--name", "none", *common])


def test_the_calibration_runner_records_every_rate_and_merges_parts(tmp_path):
    from benchmarks import calibration
    from sklearn_flowod import DeepSVDDDetector

    common = ["--datasets", adbench.SYNTHETIC, "--seeds", "0", "--out-dir", str(tmp_path)]
    calibration.main(["--detectors", "DeepSVDDDetector", "--name", "part", *common])
    results = calibration.main(["--detectors", "FlowDetector", "--name", "both",
                                "--include", "part", *common])
    assert sorted(results["detector"].unique()) == ["DeepSVDDDetector", "FlowDetector"]
    assert sorted(results["rate"].unique()) == list(calibration.RATES)
    split = adbench.load_split(adbench.SYNTHETIC, 0)
    detector = DeepSVDDDetector(random_state=0).fit(split.X_train)
    normal = split.X_test[split.y_test == 0]
    pvalues = detector.pvalues(normal)
    flagged = detector.set_false_alarm_rate(0.05).predict(normal) == -1
    row = results[(results["detector"] == "DeepSVDDDetector") & (results["rate"] == 0.05)]
    # read back from the part's file, written with 6 significant digits
    assert row["observed"].item() == pytest.approx(np.mean(flagged), rel=1e-5)
    assert row["observed_at_most"].item() == pytest.approx(np.mean(pvalues <= 0.05), rel=1e-5)
    assert row["bound"].item() > 0.05 + 1 / (row["n_calibration"].item() + 1)
    page = (tmp_path / "both.md").read_text()
    assert "FlowDetector, a = 10%" in page and "DeepSVDDDetector, 1%" in page


def test_the_explanation_runner_scores_planted_causes_next_to_ecod(tmp_path):
    pytest.importorskip("pyod")
    from benchmarks import explanations

    results = explanations.main(["--detectors", "DeepSVDDDetector", "--seeds", "0",
                                 "--no-speed", "--name", "explanations",
                                 "--out-dir", str(tmp_path)])
    assert set(results["detector"]) == {"DeepSVDDDetector", "PyOD ECOD"}
    assert set(results["kind"]) == set(explanations.KINDS)
    assert results["top1"].between(0, 1).all()
    assert "top feature is the cause" in (tmp_path / "explanations.md").read_text()


def test_the_mixed_type_table_keeps_its_joint_structure_and_plants_every_kind():
    from benchmarks import mixed_types

    table, kind = mixed_types.make_transactions(20_000, random_state=0)
    normal = table[kind == "normal"]
    assert set(np.unique(kind)) == {"normal", *mixed_types.KINDS}
    assert not ((normal["online"] == 1) & (normal["card_present"] == 1)).any()
    flags = table[kind == "flags"]
    assert ((flags["online"] == 1) & (flags["card_present"] == 1)).all()
    # the amount follows the category: a cheap category at an electronics amount is rare
    dear = np.log(normal["amount"]) > 5.0
    assert dear[normal["category"] == "grocery"].mean() < 0.01
    wrong = table[kind == "amount for category"]
    assert (np.log(wrong["amount"]) > 4.5).mean() > 0.8
    assert mixed_types.preprocessing().fit_transform(table).shape == (
        20_000, 2 + 3 + len(mixed_types.CATEGORIES))


def test_the_mixed_type_runner_scores_every_kind(tmp_path):
    from benchmarks import mixed_types

    results = mixed_types.main(["--n-samples", "3000", "--seeds", "0", "--detectors",
                                "IsolationForest", "DeepSVDDDetector", "--name", "mixed",
                                "--out-dir", str(tmp_path)])
    assert set(results["detector"]) == {"IsolationForest", "DeepSVDDDetector"}
    assert results[[f"auroc {k}" for k in mixed_types.KINDS]].notna().all().all()
    assert "AUROC, hour for category" in (tmp_path / "mixed.md").read_text()


def test_the_summary_names_the_detector_to_start_with_and_rewrites_only_its_block(tmp_path):
    from benchmarks import summary

    rows = [{"dataset": d, "detector": name, "seed": s, "auroc": auroc + 0.01 * s,
             "ap": 0.5, "inlier_rate": 0.9, "fit_s": 1.0, "score_s": 0.1,
             "commit": "abc1234", "dirty": False}
            for d in ("a", "b") for s in (0, 1)
            for name, auroc in [("FlowDetector", 0.9), ("PyOD KNN", 0.8),
                                ("DeepSVDDDetector", 0.7)]]
    pd.DataFrame(rows).to_csv(tmp_path / "quality.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{summary.BEGIN}\nold\n{summary.END}\noutro\n")
    text = summary.main(["--out-dir", str(tmp_path), "--readme", str(readme)])
    assert "start with **`FlowDetector`**" in text and "PyOD KNN (80.50)" in text
    assert "+10.00 against the best peer" in text
    # the lead is measured where the defaults were tuned, and the text says so
    assert "defaults were chosen on these same data sets" in text and "upper estimate" in text
    written = readme.read_text()
    assert written.startswith("intro\n") and written.endswith("outro\n") and "old" not in written
    assert (tmp_path / "quality_summary.md").read_text() == text


def test_the_scoring_cells_run_every_detector_beside_the_peers_with_default_threads(
        monkeypatch):
    from benchmarks import speed

    calls = []

    def fake_run(command, **options):
        calls.append((command, options["env"]))
        name, n, d = command[3], int(command[4]), int(command[5])
        result = {"detector": name, "rows": n, "features": d, "train_rows": int(command[7]),
                  "rows_per_s": 1.0, "flops_per_row": 1.0, "scoring_peak_bytes": 0,
                  "output_bytes": 8 * n, "torch_threads": 2}

        class Done:
            stdout = json.dumps(result)
        return Done()

    monkeypatch.setattr(speed.subprocess, "run", fake_run)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rows = speed.scoring(speed.QUICK, {"OMP_NUM_THREADS": None}, print)
    names = {row["detector"] for row in rows}
    assert {"PyOD KNN", "IsolationForest", "FlowDetector"} <= names
    assert all("OMP_NUM_THREADS" not in env for _, env in calls)  # the user's threads
    text = "\n".join(speed._scoring_tables(pd.DataFrame(rows)))
    assert "over PyOD KNN" in text


def test_the_speed_page_can_be_rewritten_from_its_csv_without_measuring(tmp_path):
    from benchmarks import report, speed

    rows = [{"section": "scoring", "detector": name, "rows": 100, "features": 30,
              "train_rows": 50, "rows_per_s": rate, "flops_per_row": 1.0,
              "scoring_peak_bytes": 0, "output_bytes": 800, "torch_threads": 2}
             for name, rate in [("PyOD KNN", 10.0), ("IsolationForest", 20.0),
                                ("FlowDetector", 30.0)]]
    report.stamped(pd.DataFrame(rows)).to_csv(tmp_path / "speed.csv", index=False)
    speed.main(["--update", "--sections", "--out-dir", str(tmp_path)])
    page = (tmp_path / "speed.md").read_text()
    assert "rewritten from `speed.csv` without measuring anything" in page
    assert "| FlowDetector | 30 | 3.00 | 2 |" in page
    # a second rewrite keeps the header of the page it rewrites (the measuring run's)
    measured = "# Training and scoring speed\n\n- machine: the measuring one\n"
    (tmp_path / "speed.md").write_text(measured + page[page.index("- rows from commits:"):])
    speed.main(["--update", "--sections", "--out-dir", str(tmp_path)])
    page = (tmp_path / "speed.md").read_text()
    assert page.startswith(measured + "- rows from commits:")
    assert page.count("rewritten from `speed.csv`") == 1


@pytest.mark.parametrize("budget", ["5", "5%"])
def test_the_semi_supervised_designs_keep_labelled_rows_out_of_the_scored_ones(budget):
    from benchmarks.semi_supervised import labelled_rows

    split = adbench.load_split(adbench.SYNTHETIC, 0)
    pool = np.flatnonzero(split.y_test == 1)
    seen_labelled, seen_scored = labelled_rows(split, budget, "seen")
    assert len(seen_labelled) == (5 if budget == "5" else max(5, round(0.05 * pool.size)))
    assert not set(seen_labelled) & set(seen_scored)
    assert set(seen_labelled) | set(seen_scored) == set(pool)
    novel_labelled, novel_scored = labelled_rows(split, budget, "novel")
    assert not set(novel_labelled) & set(novel_scored) and len(novel_scored)
    # the novel anomalies are a k-means part of their own: nearer each other than the known
    X = split.X_test
    centre = X[novel_scored].mean(axis=0)
    assert (np.linalg.norm(X[novel_scored] - centre, axis=1).mean()
            < np.linalg.norm(X[novel_labelled] - centre, axis=1).mean())


def test_the_semi_supervised_page_ends_with_one_summary_line_per_budget_and_condition(tmp_path):
    from benchmarks import semi_supervised

    rows = [{"dataset": d, "seed": 0, "budget": b, "condition": c, "method": m, "kind": k,
             "auroc": a, "fit_s": f, "n_labelled": 5, "commit": "abc1234", "dirty": False}
            for d in ("x", "y") for b in semi_supervised.BUDGETS
            for c in semi_supervised.CONDITIONS
            for m, k, a, f in [("FlowDetector", "package", 0.8, 1.0),
                               ("FlowDetector(labels)", "package", 0.9, 1.5),
                               ("PyOD KNN", "peer", 0.85, 0.1)]]
    page = tmp_path / "semi.md"
    semi_supervised.write_page(pd.DataFrame(rows), page, "# Header\n\n")
    lines = page.read_text().strip().splitlines()[-4:]
    assert lines[0] == ("semi-supervised summary: 5 seen: best package FlowDetector(labels) "
                        "90.00; best peer PyOD KNN 85.00")
    assert all(line.startswith("semi-supervised summary: ") for line in lines)
    assert "| FlowDetector | 1.50 |" in page.read_text()  # fit time with labels / without
