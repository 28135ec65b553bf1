"""The HTML report: a pure function of the tables, self-contained, and it renders in a real browser."""

import html
import json
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
from results_fixtures import example_frame, rows

from raymeta.cli import main
from raymeta.io.results import write_table
from raymeta.stages.report import build_report

FIGURES = [
    "fig-accuracy",
    "fig-size",
    "fig-training",
    "fig-alpha",
    "fig-reconstruction",
    "fig-balance",
    "fig-balance-at-zero",
    "fig-tune",
]


@pytest.mark.slow
def test_same_tables_give_a_byte_identical_page(tmp_path):
    write_table(example_frame(with_trials=True), tmp_path / "t")
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    assert main(["report", str(tmp_path / "t"), "-o", str(first)]) == 0
    assert main(["report", str(tmp_path / "t"), "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    shuffled = example_frame(with_trials=True).sample(frac=1.0, random_state=3)
    assert build_report(shuffled) == first.read_text()  # row order does not matter either


def test_page_is_self_contained_with_plotly_inlined_once():
    import plotly.offline

    page = build_report(example_frame(with_trials=True))
    banner = plotly.offline.get_plotlyjs()[:60]
    assert page.count(banner) == 1
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "cdn.plot.ly/plotly" not in page and "@import" not in page
    for figure in FIGURES:
        assert f'id="{figure}"' in page


@pytest.mark.slow
def test_paper_table_and_tune_view():
    page = build_report(example_frame(with_trials=True))
    table = page[page.index('<table class="paper">') : page.index("</table>")]
    assert [m for m in re.findall(r"<tr><td>([^<]+)</td>", table)] == [
        "metamorphic",
        "neumeta",
        "individual",
        "skip",
        "prune-l1",
    ]
    assert "γ=-0.25 †" in table and "γ=0.75 †" in table and "γ=0.25<" in table  # unseen γ marked
    assert "2.5 min" in table  # individual: five models of 30 s each
    assert "Tune trials" in page and "trial_00003" in page and "train.lr" in page
    tune_table = page[page.index('<table class="tune">') :]
    assert "<th>status</th>" in tune_table and "<td>stopped early</td><td>10</td>" in tune_table
    plain = build_report(example_frame(with_trials=False))
    assert "Tune trials" not in plain and 'id="fig-tune"' not in plain


def test_report_errors_name_the_problem(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    rows("m", "a").drop(columns=["accuracy"]).to_parquet(tmp_path / "broken.parquet")
    assert main(["report", str(tmp_path / "broken.parquet"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "broken.parquet" in err and "accuracy" in err and not (tmp_path / "r.html").exists()


# ---- a real browser ---------------------------------------------------------------------------------


def find_or_install_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "chromium is not installed and cannot be installed here (needs root and apt-get): "
            "apt-get install -y chromium"
        )
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.skip(f"installing chromium failed ({' '.join(command)}): {result.stderr[-300:]}")
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium():
    return find_or_install_chromium()


CAPTURE_ERRORS = (
    "<script>window.__errors = []; window.addEventListener('error', "
    "function (e) { window.__errors.push(String(e.message)); });</script>"
)
SUMMARISE = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var figures = Array.prototype.map.call(document.querySelectorAll('.plotly-graph-div'), function (d) {
    return {id: d.id, svg: d.querySelectorAll('svg.main-svg').length, traces: d.querySelectorAll('g.trace').length,
            points: d.querySelectorAll('path.point').length}; });
  var pre = document.createElement('pre'); pre.id = 'render-check';
  pre.textContent = JSON.stringify({errors: window.__errors, figures: figures});
  document.body.appendChild(pre); }, 500); });</script>"""


def browser(chromium, profile, *arguments):
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(chromium, tmp_path):
    page = build_report(example_frame(with_trials=True), title="browser test")
    report = tmp_path / "report.html"
    report.write_text(page)
    # A test copy records JavaScript errors (from before plotly.js loads) and what each figure rendered.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.replace("<head>\n", "<head>\n" + CAPTURE_ERRORS + "\n", 1).replace("</body>", SUMMARISE + "\n</body>", 1)
    )
    result = browser(chromium, tmp_path / "profile-1", "--dump-dom", probe.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="render-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the page did not finish loading: {result.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["errors"] == []
    assert "Uncaught" not in result.stderr
    rendered = {figure["id"]: figure for figure in check["figures"]}
    assert sorted(rendered) == sorted(FIGURES)
    for figure in rendered.values():
        assert figure["svg"] >= 1 and figure["traces"] >= 1 and figure["points"] >= 1, figure
    assert rendered["fig-accuracy"]["traces"] >= 4  # one per method (and the unseen-marker legend entry)

    screenshot = tmp_path / "report.png"
    result = browser(
        chromium, tmp_path / "profile-2", f"--screenshot={screenshot}", "--window-size=1280,2600", report.as_uri()
    )
    assert result.returncode == 0 and screenshot.stat().st_size > 20_000, result.stderr[-2000:]
    print(f"screenshot: {screenshot}")


def figure_traces(page: str, div_id: str) -> list[dict]:
    """The traces plotly draws in figure ``div_id`` of a report page (the JSON passed to Plotly.newPlot)."""
    found = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    assert found, f"no figure {div_id}"
    start = found.end()
    traces, _ = json.JSONDecoder().raw_decode(page[start:])
    return traces


def values(array) -> list:
    """A plotly data array as a list: plain JSON, or plotly 6's typed-array encoding (dtype + base64 bdata)."""
    if isinstance(array, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def paper_cells(page: str) -> str:
    """The methods × γ table of a page with the note under it."""
    start = page.index('<table class="paper">')
    return page[start : page.index("</p>", start)]


def test_report_never_mixes_splits():
    test_final = rows("metamorphic", "run-a", accuracy=0.9)
    validation_final = rows("metamorphic", "run-a", split="validation", accuracy=0.4321)  # evaluate --split validation
    monitor = rows("metamorphic", "run-a", phase="train", gammas=[0.0, 0.5], epoch=1, accuracy=0.55)
    legacy_monitor = rows("metamorphic", "old", phase="train", split="test", gammas=[0.0], epoch=1, accuracy=0.1111)
    page = build_report(pd.concat([test_final, validation_final, monitor, legacy_monitor], ignore_index=True))
    table = paper_cells(page)
    assert "90.00" in table and "43.21" not in table and "43.20" not in table  # γ = 0 rows: test 90, validation 43
    assert "Top-1 test accuracy (%)" in table and "Methods × γ (test split)" in page
    assert "5 on the validation split (phase = final) are not shown" in page
    curves = [y for trace in figure_traces(page, "fig-training") for y in values(trace["y"])]
    assert sorted(curves) == pytest.approx([50.0, 55.0])  # the validation monitor rows, not the legacy test one (11)
    assert "validation accuracy (%)" in page and "1 on the test split (phase = train) are not shown" in page
    accuracy = [
        y for trace in figure_traces(page, "fig-accuracy") if "y" in trace for y in values(trace["y"]) if y is not None
    ]
    assert accuracy and max(accuracy) < 91 and min(accuracy) > 80  # 90 − 10·|γ|: the test rows only

    # only one split in the tables: that one is shown, and labelled
    only_validation = build_report(pd.concat([validation_final, monitor], ignore_index=True))
    assert "Methods × γ (validation split)" in only_validation and "Top-1 validation accuracy" in only_validation
    assert "43.21" in paper_cells(only_validation)


def test_tune_view_ranks_trials_by_validation_not_test():
    # trial_a: better on validation, worse on test; trial_b the other way round. Validation must rank.
    parts = []
    for trial, validation, test in (("trial_a", 0.80, 0.50), ("trial_b", 0.70, 0.95)):
        for split, accuracy in (("validation", validation), ("test", test)):
            parts.append(
                rows(
                    "metamorphic",
                    trial,
                    split=split,
                    gammas=[0.0, 0.5],
                    accuracy=accuracy,
                    trial_id=trial,
                    trial_status="finished",
                    **{"param.train.lr": 0.01},
                )
            )
    page = build_report(pd.concat(parts, ignore_index=True))
    tune_table = page[page.index('<table class="tune">') :]
    assert tune_table.index("<td>trial_a</td>") < tune_table.index("<td>trial_b</td>")
    assert "<th>validation acc. seen γ</th>" in tune_table
    row_a = tune_table[
        tune_table.index("<td>trial_a</td>") : tune_table.index("</tr>", tune_table.index("<td>trial_a</td>"))
    ]
    assert "<td>77.50%</td><td>47.50%</td>" in row_a  # validation 0.8 − 0.1·0.25 on average; test beside it
    scores = values(figure_traces(page, "fig-tune")[0]["y"])
    assert scores == pytest.approx([77.5, 67.5])


# ---- the skip floor and the health signals ------------------------------------------------------------


def with_accuracy(frame: pd.DataFrame, accuracies: list[float]) -> pd.DataFrame:
    return frame.assign(accuracy=accuracies)


def test_a_result_not_clearly_above_skip_is_flagged_and_one_clearly_above_is_not():
    from raymeta.stages.report import image_count

    gammas = [0.0, 0.25, 0.5]
    # one metamorphic run on 1000 test images: clearly above skip at γ = 0, within two binomial standard errors
    # (2·√(0.81·0.19/1000) = 2.48 points) above it at γ = 0.25, below it at γ = 0.5
    metamorphic = with_accuracy(rows("metamorphic", "run-a", gammas=gammas), [0.951, 0.81, 0.779])
    skip = with_accuracy(rows("skip", "run-a/skip", gammas=gammas), [0.8] * 3)
    # two NeuMeta runs: their spread is the noise (std 1.41 points): 6 points above clears it, 0 does not
    neumeta = [
        with_accuracy(rows("neumeta", f"n{i}", gammas=[0.0, 0.5]), values)
        for i, values in enumerate(([0.85, 0.81], [0.87, 0.79]))
    ]
    assert image_count(metamorphic["accuracy"]) == 1000
    page = build_report(pd.concat([metamorphic, skip, *neumeta], ignore_index=True))
    table = page[page.index('<table class="paper">') : page.index("</table>")]
    cells = dict(re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", table))
    assert re.findall(r"<td[^>]*>([^<]*)</td>", cells["metamorphic"])[:3] == ["95.10", "81.00 ⚠", "77.90 ⚠"]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", cells["neumeta"])[:3] == ["86.00 ± 1.41", "–", "80.00 ± 1.41 ⚠"]
    assert "⚠" not in cells["skip"]
    warning = page[page.index('<div class="warn">') : page.index("</div>", page.index('<div class="warn">'))]
    assert "3 of 5 results" in warning
    assert (
        "metamorphic at γ=0.25: 81.00% against 80.00% (+1.00 points; noise 2.48 points: two binomial standard "
        "errors, n ≥ 1000 images)"
    ) in warning
    assert "metamorphic at γ=0.5: 77.90% against 80.00% (-2.10 points" in warning
    assert "neumeta at γ=0.5: 80.00% against 80.00% (+0.00 points; noise 1.41 points: std over 2 runs)" in warning
    assert "γ=0:" not in warning  # the results clearly above skip are not listed
    assert "least common denominator" in page  # the rule is stated on the page

    clear = build_report(pd.concat([with_accuracy(metamorphic, [0.951, 0.95, 0.95]), skip], ignore_index=True))
    assert "⚠" not in clear[clear.index('<table class="paper">') : clear.index("</table>")]
    assert '<div class="warn">' not in clear and "Every metamorphic result clears skip" in clear
    alone = build_report(metamorphic)  # no skip rows: nothing checked, nothing said
    assert "⚠" not in alone and "clears skip" not in alone


def test_test_images_is_a_lower_bound_recovered_from_the_accuracies():
    from raymeta.stages.report import image_count

    assert image_count([331 / 1797, 1000 / 1797, 1.0]) == 1797
    assert image_count([0.5, 0.25]) == 4  # every count shares a factor with n: a smaller n, a wider noise
    assert image_count([1 / 999_983, 1 / 999_979]) is None  # no one set of at most a million images


def test_skip_is_a_dashed_reference_line_and_every_legend_entry_names_its_training_cost():
    page = build_report(example_frame())
    named = {trace.get("name"): trace for trace in figure_traces(page, "fig-accuracy")}
    assert named["skip (training 5.0 s)"] and named["individual (training 2.5 min)"]  # each γ's network counted
    traces = {name.split(" (training")[0]: trace for name, trace in named.items() if name}
    assert traces["skip"]["line"]["dash"] == "dash" and "dash" not in traces["metamorphic"]["line"]
    assert values(traces["skip"]["y"]) == pytest.approx([75.0] * 5)


def test_health_signals_are_drawn_against_epoch_when_the_rows_have_them():
    page = build_report(example_frame())
    alpha = {trace["name"]: trace for trace in figure_traces(page, "fig-alpha")}
    assert sorted(alpha) == ["stage3.block1", "stage3.block2", "stage3.block3"]
    assert values(alpha["stage3.block1"]["x"]) == list(range(1, 10))  # one point per epoch, not per γ row
    assert values(alpha["stage3.block3"]["x"]) == [7, 8, 9]  # joined at stage 3
    assert values(alpha["stage3.block1"]["y"]) == pytest.approx([0.1 * e for e in range(1, 10)])
    reconstruction = {trace["name"]: trace for trace in figure_traces(page, "fig-reconstruction")}
    assert len(reconstruction) == 12 and values(reconstruction["stages.2.1.conv1.weight"]["y"])[0] == 1.0
    # the loss balance on a log axis, with its level 1 drawn across the epochs
    for div_id, kernel in (("fig-balance", [0.01 * e for e in range(1, 10)]), ("fig-balance-at-zero", [0.02] * 9)):
        balance = {trace["name"]: trace for trace in figure_traces(page, div_id)}
        assert len(balance) == 13 and values(balance["stages.2.1.conv1.weight"]["y"]) == pytest.approx(kernel)
        assert values(balance["stages.2.1.conv1.bias"]["y"]) == pytest.approx([50.0] * 9)
        (level,) = (trace for name, trace in balance.items() if not name.startswith("stages."))
        assert values(level["x"]) == [1, 9] and values(level["y"]) == [1.0, 1.0]
    assert page.count('"type":"log"') >= 2
    # tables from before the signals: the figures are left out, the rest renders
    old = example_frame()
    old = old[[c for c in old.columns if not c.startswith(("alpha.", "rec.", "balance"))]]
    plain = build_report(old)
    assert 'id="fig-training"' in plain and 'id="fig-alpha"' not in plain and 'id="fig-reconstruction"' not in plain
    assert 'id="fig-balance"' not in plain and 'id="fig-balance-at-zero"' not in plain
