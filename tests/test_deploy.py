"""raymeta deploy: the best validation configuration within a budget, its cost checked, exported; the latency
table cached; budgets parsed; the report's deployment section."""

import json

import pandas as pd
import pytest
import torch

import raymeta.stages.latency as latency
from raymeta.cli import main
from raymeta.config.schema import DeployConfig
from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.io.results import read_table
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.deploy import Budget, deploy, evaluation_data, parse_budget
from raymeta.stages.export import generation_settings, load_exported, materialize_like_evaluation
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data

QUIET = Progress(stream=open("/dev/null", "w"))


@pytest.fixture(autouse=True)
def _quick_timing(monkeypatch):
    """Latency timings of a few passes: the tests check the bookkeeping, not the machine."""
    monkeypatch.setattr(latency, "WARMUP_RUNS", 1)
    monkeypatch.setattr(latency, "REPEATS", 3)
    monkeypatch.setattr(latency, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(latency, "FINAL_SECONDS", 0.0)


@pytest.fixture(scope="module")
def run(per_block_run):
    return per_block_run


def options(budget: Budget, **overrides) -> DeployConfig:
    values = {f"max_{budget.kind}": budget.limit, "onnx": False, "candidates": 60, "gammas": [0.0, 0.25, 0.5, 0.75]}
    return DeployConfig(**{**values, **overrides})


def costs(run):
    net, _, _ = load_trained(RunPaths(run.run_dir).train_checkpoint)
    return net, {g: net.params_macs(g, 8) for g in (0.0, 0.25, 0.5, 0.75, (0.75, 0.0), (0.0, 0.75))}


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_deploy_respects_the_budget_and_picks_the_best_validation_candidate(run, tmp_path):
    net, sizes = costs(run)
    limit = (sizes[0.0][1] + sizes[0.75][1]) // 2  # about half the per-block space fits
    summary = deploy(run.run_dir, options(Budget("macs", limit), output=str(tmp_path)), QUIET)
    table = read_table(tmp_path / "pareto.parquet")
    validation = table[table["split"] == "validation"]
    assert (
        len(validation)
        == summary["candidates"]
        == 4
        + len(
            [
                1
                for a in (0, 0.25, 0.5, 0.75)
                for b in (0, 0.25, 0.5, 0.75)
                if a != b and net.params_macs((a, b), 8)[1] <= limit
            ]
        )
    )
    within = validation[validation["macs"] <= limit]
    chosen = validation[validation["search_status"] == "chosen"].iloc[0]
    assert chosen["macs"] <= limit and summary["macs"] == chosen["macs"]
    assert chosen["accuracy"] == within["accuracy"].max()  # the best within the budget (on validation) ...
    assert (validation.loc[validation["macs"] > limit, "search_status"] == "over budget").all()
    gamma = tuple(chosen[f"gamma.{b}"] for b in net.block_names())
    widths = tuple(int(chosen[f"width.{b}"]) for b in net.block_names())
    assert widths == tuple(net.hidden_widths(gamma).values())
    # ... and that accuracy is the exported network's on the validation split, scored the ordinary way
    _, config, _ = load_trained(RunPaths(run.run_dir).train_checkpoint)
    bundle = load_data(config, augment=False)
    from raymeta.io.data import make_loader

    model, spec = load_exported(tmp_path)
    assert spec["block_gammas"] == dict(zip(net.block_names(), gamma, strict=True))
    accuracy, _ = accuracy_and_loss(model, make_loader(bundle.validation, 256, shuffle=False), "cpu")
    assert accuracy == pytest.approx(chosen["accuracy"])
    assert summary["validation_accuracy"] == chosen["accuracy"] and summary["test_accuracy"] is not None
    assert summary["measured_latency_ms"] > 0 and json.loads((tmp_path / "deploy.json").read_text())["candidates"]


def test_the_search_scores_exactly_what_export_writes(run):
    """The prefix shortcut (the frozen blocks run once) gives the exported network's accuracy."""
    from raymeta.stages.deploy import score_candidate

    net, config, _ = load_trained(RunPaths(run.run_dir).train_checkpoint)
    bundle = load_data(config, augment=False)
    settings = generation_settings(config, None)
    data = evaluation_data(net, bundle, "validation")
    model = materialize_like_evaluation(net, (0.5, 0.25), **settings)
    from raymeta.io.data import make_loader

    expected = accuracy_and_loss(model, make_loader(bundle.validation, 256, shuffle=False), "cpu")
    accuracy, loss, _ = score_candidate(net, (0.5, 0.25), data, settings)
    assert accuracy == expected[0] and loss == pytest.approx(expected[1], rel=1e-5)


def test_evolutionary_search_stops_at_the_candidate_budget(run, tmp_path):
    _, sizes = costs(run)
    summary = deploy(
        run.run_dir,
        options(
            Budget("macs", sizes[0.0][1]),
            output=str(tmp_path),
            candidates=9,
            gammas=[0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75],
        ),
        QUIET,
    )
    assert summary["candidates"] <= 9 and summary["search"].startswith("evolutionary")
    table = read_table(tmp_path / "pareto.parquet")
    assert (table.loc[table["split"] == "validation", "search_kind"] == "per_block").sum() >= 1


def test_an_impossible_budget_names_the_smallest_cost_reachable(run, capsys):
    _, sizes = costs(run)
    smallest = sizes[0.75][1]
    with pytest.raises(ConfigError) as error:
        deploy(run.run_dir, options(Budget("macs", smallest - 1)), QUIET)
    assert f"is {smallest / 1e3:g}k MACs (γ=0.75 on every metamorphic block)" in str(error.value)
    assert main(["deploy", "--run-dir", run.run_dir, "--max-params", "10", "--no-onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raymeta: error: no configuration fits the budget of 10 parameters") and "smallest" in err


@pytest.mark.parametrize(
    "kind,text,value",
    [
        ("macs", "20M", 2e7),
        ("params", "200k", 2e5),
        ("macs", "1.5e6", 1.5e6),
        ("latency_ms", "1.5", 1.5),
        ("latency_ms", "0.8ms", 0.8),
        ("params", "3G", 3e9),
    ],
)
def test_budgets_parse(kind, text, value):
    assert parse_budget(kind, text) == Budget(kind, value)


@pytest.mark.parametrize(
    "kind,text",
    [("macs", "20Q"), ("params", "-5k"), ("macs", ""), ("latency_ms", "1.5M"), ("macs", "0"), ("params", "nan")],
)
def test_bad_budgets_are_one_clear_error(kind, text):
    with pytest.raises(ConfigError, match=r"is not allowed: a positive number"):
        parse_budget(kind, text)


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_deploy_command_errors(run, capsys):
    assert main(["deploy", "--run-dir", run.run_dir, "--max-macs", "20Q"]) == 2
    assert "--max-macs='20Q' is not allowed" in capsys.readouterr().err
    assert main(["deploy", "--run-dir", run.run_dir]) == 2
    assert "exactly one budget" in capsys.readouterr().err
    assert main(["deploy", "--run-dir", run.run_dir, "--max-macs", "1M", "--max-params", "1k"]) == 2
    assert "exactly one budget" in capsys.readouterr().err


def test_the_latency_table_is_built_once_per_device_and_reused(run, tmp_path):
    net, _, _ = load_trained(RunPaths(run.run_dir).train_checkpoint)
    widths = {position: {4, 8} for position in net.active()}
    args = (tmp_path, net.arch, net.active(), 8, torch.device("cpu"), 1, 1)
    first = latency.latency_table(*args, widths)
    assert first.measurements == 2 * 2 + 1  # two widths of two blocks (8 is the prior's), and the base
    path = latency.table_path(tmp_path, torch.device("cpu"), 1, 1)
    stored = json.loads(path.read_text())  # JSON, never pickle
    assert stored["format"] == "raymeta-latency" and set(stored["block_ms"]["stage2.block1"]) == {"4", "8"}
    again = latency.latency_table(*args, widths)
    assert again.measurements == 0 and again.block_ms == first.block_ms and again.base_ms == first.base_ms
    grown = latency.latency_table(*args, {position: {4, 6} for position in net.active()})
    assert grown.measurements == 2 + 1  # only width 6 of each block is new (and the base is re-measured)
    other = latency.latency_table(tmp_path, net.arch, net.active(), 8, torch.device("cpu"), 2, 1, widths)
    assert other.measurements == 5  # another batch size is another table
    estimate = again.estimate({(1, 1): 4, (2, 1): 8})
    assert estimate == pytest.approx(
        again.base_ms + again.block_ms["stage2.block1"]["4"] + again.block_ms["stage3.block1"]["8"]
    )


def test_a_latency_budget_is_checked_on_the_measured_network(run, tmp_path, monkeypatch):
    """Latency is estimated from the table for the search; the chosen network is measured, and a candidate that
    measures over the budget gives way to the next best."""
    measured = iter([5.0, 0.5, 0.5])  # the best candidate measures over the budget; the next fits
    monkeypatch.setattr("raymeta.stages.deploy._measure", lambda *args: next(measured))
    monkeypatch.setattr(latency.LatencyTable, "estimate", lambda self, hidden: 0.1 * sum(hidden.values()))
    summary = deploy(run.run_dir, options(Budget("latency_ms", 1.4), output=str(tmp_path)), QUIET)
    table = read_table(tmp_path / "pareto.parquet")
    validation = table[table["split"] == "validation"].sort_values("accuracy", ascending=False, kind="stable")
    within = validation[validation["latency_ms"] <= 1.4]
    chosen = validation[validation["search_status"] == "chosen"].iloc[0]
    assert summary["measured_latency_ms"] == 0.5 and chosen["latency_ms"] <= 1.4
    assert chosen["accuracy"] <= within["accuracy"].max()


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_report_has_a_deployment_section_and_keeps_it_out_of_the_gamma_comparison(run, tmp_path):
    from raymeta.io.results import read_tables
    from raymeta.stages.report import build_report

    _, sizes = costs(run)
    deploy(run.run_dir, options(Budget("macs", sizes[0.25][1]), output=str(tmp_path / "d"), report_test=True), QUIET)
    rows = read_tables([RunPaths(run.run_dir).results, tmp_path / "d"])
    individual = rows[(rows["phase"] == "final")].head(0)
    assert individual.empty
    page = build_report(rows, title="t")
    assert "Deployment search (raymeta deploy)" in page and "fig-deploy-0" in page and "fig-deploy-test-0" in page
    assert page == build_report(rows.sample(frac=1, random_state=1), title="t")  # a pure function of the rows
    alone = build_report(read_tables(tmp_path / "d"), title="t")
    assert "fig-deploy-0" in alone and "Accuracy against γ" not in alone
    test_rows = pd.read_parquet(tmp_path / "d" / "pareto.parquet").query("split == 'test'")
    assert set(test_rows["search_kind"]) == {"uniform", "per_block"} or len(test_rows) >= 4


@pytest.mark.ray
def test_candidates_run_as_ray_tasks_when_a_cluster_is_connected(run, tmp_path):
    """Connected to Ray, the candidates are Ray tasks; they score exactly what the in-process search scores."""
    from ray_fixtures import embedded_ray

    _, sizes = costs(run)
    budget = Budget("macs", sizes[0.25][1])
    local = deploy(run.run_dir, options(budget, output=str(tmp_path / "local")), QUIET)
    ray_up = embedded_ray()
    next(ray_up)
    try:
        remote = deploy(run.run_dir, options(budget, output=str(tmp_path / "ray")), QUIET)
    finally:
        next(ray_up, None)
    assert local["evaluated"] == "in this process" and remote["evaluated"].startswith("as Ray tasks")
    tables = [read_table(tmp_path / name / "pareto.parquet") for name in ("local", "ray")]
    key = [c for c in tables[0].columns if c.startswith("gamma.")] + ["split"]
    merged = tables[0].merge(tables[1], on=key, suffixes=("_local", "_ray"))
    assert len(merged) == len(tables[0]) == len(tables[1])
    assert (merged["accuracy_local"] == merged["accuracy_ray"]).all()
    assert remote["block_gammas"] == local["block_gammas"]


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_deploy_command_writes_the_network_and_the_tables(run, tmp_path, capsys):
    _, sizes = costs(run)
    args = [
        "deploy",
        "--run-dir",
        run.run_dir,
        "--max-macs",
        str(sizes[0.25][1]),
        "--gammas",
        "0,0.5",
        "--no-onnx",
        "-o",
        str(tmp_path),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    import re

    assert re.search(r"deploy: searched [34] candidates in [0-9.]+s", out) and "deploy: chose γ=" in out
    assert {"network.pt", "network.json", "network.pt2", "pareto.parquet", "deploy.json"} <= {
        p.name for p in tmp_path.iterdir()
    }


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_baselines_are_drawn_only_beside_a_search_of_their_shape(run, tmp_path):
    """Individual and pruning rows go on a search's axes where they have the shape of one of its uniform networks
    (the same MACs, parameters less the α scalars), with that network's latency; others are left off."""
    from raymeta.io.results import read_table
    from raymeta.stages.deploy_report import _test_figure

    net, sizes = costs(run)
    deploy(run.run_dir, options(Budget("macs", sizes[0.0][1]), output=str(tmp_path), report_test=True), QUIET)
    table = read_table(tmp_path / "pareto.parquet")
    validation, test = table[table["split"] == "validation"], table[table["split"] == "test"]
    uniform = validation[validation["search_kind"] == "uniform"].set_index("gamma")
    baseline = test[test["search_kind"] == "uniform"].drop(columns=[c for c in test.columns if "." in c])
    baseline = baseline.assign(method="individual", params=baseline["params"] - len(net.blocks))
    stranger = baseline.assign(method="prune-l1", params=baseline["params"] - 1000)  # another network's shape
    others = pd.concat([baseline, stranger], ignore_index=True)
    figure = _test_figure(test, others, validation, net.block_names())
    traces = {(trace.name, trace.xaxis): trace for trace in figure.data}
    assert not any(name == "prune-l1" for name, _ in traces)
    drawn = traces[("individual", "x2")]  # the latency panel
    assert sorted(drawn.x) == sorted(uniform.loc[list(baseline["gamma"]), "latency_ms"])


def test_the_pareto_front_of_a_hand_made_set_with_ties():
    from raymeta.method.pareto import pareto_front

    #            0    1    2    3    4    5     6    7
    costs = [3.0, 1.0, 2.0, 2.0, 1.0, 4.0, float("nan"), 5.0]
    accuracy = [0.7, 0.5, 0.6, 0.6, 0.4, 0.7, 0.9, float("nan")]
    # 1 (cheapest, better than 4 at the same cost); 2 (3 ties it and comes later); 0; not 5 (as good as 0, dearer);
    # 6 last (no cost known), 7 never (no accuracy)
    assert pareto_front(costs, accuracy) == [1, 2, 0, 6]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError, match="3 costs but 2 accuracies"):
        pareto_front([1, 2, 3], [0.1, 0.2])
