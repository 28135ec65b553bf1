"""Deploy to a budget: the configuration with the best validation accuracy within a MAC, parameter or latency
budget, found by a search over per-block widths, then exported.

A configuration is one γ per metamorphic block (:mod:`raymeta.method.widths`). The search runs on a grid of γ values
(``--gammas``; by default -0.25 to 0.75 in steps of 0.125):

1. every uniform γ of the grid (the curve a user of plain ``raymeta export`` chooses from);
2. per-block configurations within the budget: every one of them when they fit in ``--candidates`` (exhaustive),
   else an evolutionary search (mutation of one block by one or two grid steps, uniform crossover, the population
   the best by validation accuracy) until ``--candidates`` have been evaluated.

Each candidate is the network ``raymeta export`` would write (K-sample weights, α folded in) scored on the
**validation** split; the test split is only evaluated for reporting (the chosen network, and with
``report_test`` the uniform curve and the front), never to choose. Cost: parameters and MACs by formula
(:func:`raymeta.method.models.count_params_macs`), latency from the per-device table of :mod:`raymeta.stages.latency`; the
chosen network is measured itself and checked against a latency budget. Candidates run as Ray tasks when a Ray
cluster is connected (``ray.is_initialized()``, or ``address``), else in this process.

Writes under ``RUN_DIR/deploy/<budget>/``: the exported network (:mod:`raymeta.stages.export`), ``pareto.parquet`` (every
candidate in the results schema, with ``gamma.<block>``/``width.<block>`` columns) and ``deploy.json`` (the choice).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raymeta.config.schema import DeployConfig
from raymeta.errors import ConfigError
from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths, atomic_write_text, require_local, save_config
from raymeta.io.progress import Bar
from raymeta.io.results import RunIdentity, result_frame, write_table
from raymeta.method.models import block_name
from raymeta.method.pareto import pareto_front
from raymeta.method.scoring import accuracy_and_loss
from raymeta.method.widths import Gamma, block_gammas, canonical, format_gamma
from raymeta.stages import latency
from raymeta.stages.export import (
    ONNX_MISSING,
    calibration_data,
    export_network,
    generation_settings,
    load_exported,
    materialize_like_evaluation,
)
from raymeta.stages.identity import run_identity
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data

BUDGET_KINDS = {"macs": "MACs", "params": "parameters", "latency_ms": "latency (ms)"}
SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
ENUMERATION_LIMIT = 200_000
"""Per-block spaces up to this size are enumerated (costs by formula, cheap); larger ones are only sampled."""
DEFAULT_GRID = tuple(round(-0.25 + 0.125 * i, 3) for i in range(9))
"""γ = -0.25, -0.125, 0, …, 0.75: one grid for every block (widths 1.25× to 0.25× the prior's)."""


@dataclass(frozen=True)
class Budget:
    kind: str
    limit: float

    def describe(self, value: float | None = None) -> str:
        return format_cost(self.kind, self.limit if value is None else value)

    def tag(self) -> str:
        """The folder name of a deployment, e.g. ``macs=20M``."""
        unit = "ms" if self.kind == "latency_ms" else ""
        name = "latency" if self.kind == "latency_ms" else self.kind
        return f"{name}={_short(self.limit)}{unit}"


def _short(value: float) -> str:
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def format_cost(kind: str, value: float) -> str:
    if kind == "latency_ms":
        return f"{value:.3g} ms"
    return f"{_short(value)} {BUDGET_KINDS[kind]}"


def parse_budget(kind: str, text: str) -> Budget:
    """``--max-macs 20M`` / ``--max-params 200k`` / ``--max-latency-ms 1.5``: a positive number, for MACs and
    parameters with an optional k, M or G suffix (10³, 10⁶, 10⁹)."""
    option = "--max-" + kind.replace("_", "-")
    if kind not in BUDGET_KINDS:
        raise ConfigError(f"budget kind {kind!r} is not allowed: {', '.join(BUDGET_KINDS)}")
    pattern = (
        r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*"
        if kind != "latency_ms"
        else r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?:ms)?\s*()"
    )
    match = re.fullmatch(pattern, str(text))
    allowed = (
        "a positive number of milliseconds, e.g. 1.5"
        if kind == "latency_ms"
        else "a positive number with an optional k, M or G suffix, e.g. 20M, 200k, 1.5e6"
    )
    if not match:
        raise ConfigError(f"{option}={text!r} is not allowed: {allowed}")
    value = float(match.group(1)) * SUFFIXES[match.group(2).lower()]
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{option}={text!r} is not allowed: {allowed}")
    return Budget(kind, value)


@dataclass
class Candidate:
    gamma: Gamma
    kind: str  # "uniform" | "per_block"
    params: int
    macs: int
    latency_ms: float = float("nan")
    accuracy: float = float("nan")
    loss: float = float("nan")
    seconds: float = 0.0
    test: dict = field(default_factory=dict)

    def cost(self, kind: str) -> float:
        return {"macs": self.macs, "params": self.params, "latency_ms": self.latency_ms}[kind]


# ---- candidate evaluation ----------------------------------------------------------------------------------------
@dataclass
class EvaluationData:
    """A split prepared for scoring many candidates: the activations entering the first metamorphic block (the
    frozen prefix before it is the same in every candidate, so it runs once), and the labels."""

    features: torch.Tensor
    labels: torch.Tensor
    start: int
    """Index, in forward order, of the first block a candidate still has to run."""

    def batches(self, size: int):
        """(features, labels) in consecutive slices of ``size``."""
        for first in range(0, len(self.labels), size):
            yield self.features[first : first + size], self.labels[first : first + size]


@torch.no_grad()
def evaluation_data(net, bundle, split: str = "validation", batch_size: int = 512) -> EvaluationData:
    """``split`` of the run's data as :class:`EvaluationData` (the prefix run through the prior's own blocks)."""
    dataset = bundle.validation if split == "validation" else bundle.test
    if dataset is None:
        raise ConfigError(
            "raymeta deploy chooses on the validation split, and this run has none "
            "(data.validation_fraction=0): train with a validation split"
        )
    start = net.first_active()
    features, labels = [], []
    for images, target in make_loader(dataset, batch_size, shuffle=False):
        features.append(net.prior.forward_blocks(net.prior.forward_stem(images), stop=start))
        labels.append(target)
    return EvaluationData(torch.cat(features), torch.cat(labels), start)


@torch.no_grad()
def score_candidate(
    net, gamma: Gamma, data: EvaluationData, settings: dict, batch_size: int = 500
) -> tuple[float, float, float]:
    """(accuracy, mean cross-entropy, seconds) of the network :func:`raymeta.stages.export.export_network` would write
    at ``gamma`` (K-sample weights drawn as ``raymeta evaluate`` draws them), on ``data``: its blocks from
    ``data.start`` on, then its head."""
    start = time.perf_counter()
    model = materialize_like_evaluation(net, gamma, **settings)
    accuracy, loss = accuracy_and_loss(
        lambda x: model.forward_head(model.forward_blocks(x, start=data.start)), data.batches(batch_size)
    )
    return accuracy, loss, time.perf_counter() - start


class LocalEvaluator:
    """Candidates one after another in this process."""

    name = "in this process"

    def __init__(self, net, data, settings: dict):
        self.net, self.data, self.settings = net, data, settings

    def __call__(self, gammas: list[Gamma], on_each=None) -> list[tuple[float, float, float]]:
        """(accuracy, loss, seconds) of each configuration; ``on_each(1)`` after each."""
        scores = []
        for gamma in gammas:
            scores.append(score_candidate(self.net, gamma, self.data, self.settings))
            if on_each is not None:
                on_each(1)
        return scores


class RayEvaluator:
    """Candidates as Ray tasks (one CPU, one torch thread each) on the connected cluster; the network and the
    data go to the object store once."""

    def __init__(self, net, data, settings: dict):
        import ray  # here, not at the top: Ray's import takes seconds, and a deployment without a cluster needs none

        self.ray = ray
        self.net_ref, self.data_ref = ray.put(net.cpu()), ray.put(data)
        self.settings = settings
        self.task = ray.remote(num_cpus=1)(_remote_score)
        self.name = f"as Ray tasks ({int(ray.cluster_resources().get('CPU', 0))} CPUs in the cluster)"

    def __call__(self, gammas: list[Gamma], on_each=None) -> list[tuple[float, float, float]]:
        """(accuracy, loss, seconds) of each configuration; ``on_each(n)`` as n more tasks finish."""
        tasks = [self.task.remote(self.net_ref, gamma, self.data_ref, self.settings) for gamma in gammas]
        pending = list(tasks) if on_each is not None else []
        while pending:
            finished, pending = self.ray.wait(pending, num_returns=1)
            on_each(len(finished))
        return self.ray.get(tasks)


def _remote_score(net, gamma, data, settings):
    torch.set_num_threads(1)
    return score_candidate(net, gamma, data, settings)


# ---- the search --------------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    candidates: list[Candidate]
    chosen: Candidate | None
    seconds: float
    mode: str  # how the per-block space was searched


def valid_grid(net, grid: tuple[float, ...]) -> tuple[float, ...]:
    """The γ of ``grid`` every metamorphic block can take (a γ that leaves a block no channel is dropped)."""
    kept = []
    for gamma in grid:
        try:
            net.hidden_widths(gamma)
        except ConfigError:
            continue
        kept.append(float(gamma))
    if not kept:
        raise ConfigError(
            f"--gammas {format_gamma(grid)}: no value is a valid γ for every metamorphic block "
            f"(allowed: -1 ≤ γ < 1, leaving at least one hidden channel)"
        )
    return tuple(kept)


def search(
    net,
    evaluate,
    budget: Budget,
    grid: tuple[float, ...],
    cost_of,
    *,
    max_candidates: int = 60,
    population: int = 8,
    seed: int = 0,
    progress=print,
) -> SearchResult:
    """Uniform γ of the grid first, then per-block configurations within ``budget`` (exhaustive when they fit in
    ``max_candidates``, evolutionary otherwise); the best validation accuracy within the budget is chosen (the
    lower cost on a tie). ``cost_of(gamma)`` returns (params, macs, latency_ms); ``evaluate(list of γ, on_each=)`` the
    (accuracy, loss, seconds) of each, calling ``on_each(n)`` as n more are done (a progress bar per batch)."""
    start = time.perf_counter()
    blocks = len(net.blocks)
    evaluated: dict[Gamma, Candidate] = {}

    def make(gamma: Gamma) -> Candidate:
        gamma = canonical(gamma)
        params, macs, latency = cost_of(gamma)
        return Candidate(gamma, "uniform" if isinstance(gamma, float) else "per_block", params, macs, latency)

    def within(candidate: Candidate) -> bool:
        return candidate.cost(budget.kind) <= budget.limit

    def run(batch: list[Candidate], what: str) -> None:
        if not batch:
            return
        with Bar(len(batch), f"deploy: {what}", unit="candidate", progress=progress) as bar:
            scores = evaluate([c.gamma for c in batch], on_each=bar.update)
        for candidate, (accuracy, loss, seconds) in zip(batch, scores, strict=True):
            candidate.accuracy, candidate.loss, candidate.seconds = accuracy, loss, seconds
            evaluated[candidate.gamma] = candidate
        best = max((c for c in evaluated.values() if within(c)), key=lambda c: c.accuracy, default=None)
        progress(
            f"deploy: {what}: {len(batch)} evaluated ({len(evaluated)} in all, {time.perf_counter() - start:.1f}s)"
            + (
                f"; best within budget so far: γ={format_gamma(best.gamma)} validation acc {best.accuracy:.4f}"
                if best
                else "; none within the budget yet"
            )
        )

    uniform = [make(gamma) for gamma in grid]
    smallest = min(uniform, key=lambda c: c.cost(budget.kind))  # the narrowest γ on every block: the cheapest
    if not within(smallest):
        raise ConfigError(
            f"no configuration fits the budget of {budget.describe()}: the smallest this run reaches on the γ grid "
            f"is {budget.describe(smallest.cost(budget.kind))} (γ={format_gamma(smallest.gamma)} on every metamorphic "
            f"block); raise the budget, or extend the grid with --gammas (γ < 1)"
        )
    run(uniform, "uniform γ")
    room = max(0, max_candidates - len(evaluated))
    if blocks == 1:
        mode = "none: one metamorphic block (uniform γ is every configuration)"
    elif len(grid) ** blocks <= ENUMERATION_LIMIT:
        space = [make(combo) for combo in itertools.product(grid, repeat=blocks) if len(set(combo)) > 1]
        feasible = {c.gamma: c for c in space if within(c)}
        if len(feasible) <= room:
            mode = f"exhaustive over {len(feasible)} per-block configuration(s) within the budget"
            progress(f"deploy: per-block: {mode}")
            run(list(feasible.values()), "per-block (exhaustive)")
        else:
            mode = (
                f"evolutionary ({len(feasible)} per-block configurations within the budget, at most {room} "
                f"evaluated; population {population})"
            )
            progress(f"deploy: per-block: {mode}")
            _evolve(evaluated, feasible.get, within, grid, blocks, run, room, population, seed)
    else:
        mode = (
            f"evolutionary ({len(grid)}^{blocks} per-block configurations, at most {room} evaluated; population "
            f"{population})"
        )
        progress(f"deploy: per-block: {mode}")
        cache: dict = {}

        def feasible_candidate(gamma):
            if gamma not in cache:
                candidate = make(gamma)
                cache[gamma] = candidate if within(candidate) else None
            return cache[gamma]

        _evolve(evaluated, feasible_candidate, within, grid, blocks, run, room, population, seed)
    within_budget = [c for c in evaluated.values() if within(c)]
    chosen = max(within_budget, key=lambda c: (c.accuracy, -c.cost(budget.kind))) if within_budget else None
    return SearchResult(list(evaluated.values()), chosen, time.perf_counter() - start, mode)


def _evolve(
    evaluated: dict, feasible, within, grid: tuple[float, ...], blocks: int, run, room: int, population: int, seed: int
) -> None:
    """Generations of children of the ``population`` best evaluated configurations within the budget: uniform
    crossover (half the time), then one block moved by ±1 or ±2 grid steps; only new configurations within the
    budget (``feasible(γ)`` returns their candidate, else None) are kept. Stops after ``room`` evaluations, or when
    three generations in a row find nothing new."""
    rng = np.random.default_rng(seed)
    index = {g: i for i, g in enumerate(grid)}

    def as_vector(gamma) -> list[int]:
        return [index[g] for g in block_gammas(gamma, [""] * blocks)]

    budget_left, stale = room, 0
    while budget_left > 0 and stale < 3:
        ranked = sorted((c for c in evaluated.values() if within(c)), key=lambda c: -c.accuracy)
        parents = [as_vector(c.gamma) for c in ranked[:population]]
        children: list = []
        attempts = 0
        while len(children) < min(population, budget_left) and attempts < 200 * population:
            attempts += 1
            child = list(parents[int(rng.integers(len(parents)))])
            if len(parents) > 1 and rng.random() < 0.5:
                other = parents[int(rng.integers(len(parents)))]
                child = [a if rng.random() < 0.5 else b for a, b in zip(child, other, strict=True)]
            position = int(rng.integers(blocks))
            child[position] = int(np.clip(child[position] + rng.choice([-2, -1, 1, 2]), 0, len(grid) - 1))
            gamma = canonical(tuple(grid[i] for i in child))
            if isinstance(gamma, float) or gamma in evaluated or any(gamma == c.gamma for c in children):
                continue
            candidate = feasible(gamma)
            if candidate is not None:
                children.append(candidate)
        if not children:
            stale += 1
            continue
        stale = 0
        run(children, "per-block (evolutionary generation)")
        budget_left -= len(children)


def front_candidates(candidates: list[Candidate], kind: str) -> list[Candidate]:
    """The candidates no other beats on both cost ``kind`` (lower) and validation accuracy (higher), by cost
    (:func:`raymeta.method.pareto.pareto_front`)."""
    return [candidates[i] for i in pareto_front([c.cost(kind) for c in candidates], [c.accuracy for c in candidates])]


# ---- the command -------------------------------------------------------------------------------------------------
def deploy(run_dir: str | Path, options: DeployConfig, progress=print) -> dict:
    """Search the run's configurations for the best validation accuracy within the budget of ``options``, export
    it, and write the Pareto table, ``deploy.json`` and ``config.yaml`` (the run's configuration with the deploy
    settings it ran with: ``raymeta deploy --config`` on it deploys again); returns what ``deploy.json`` holds."""
    require_local(run_dir, "raymeta deploy's run_dir")
    budget = parse_budget(*options.budget())  # exactly one, given in the deploy: group or as its flag
    device = torch.device(options.device)
    paths = RunPaths(str(run_dir))
    net, config, checkpoint = load_trained(paths.train_checkpoint)
    if not checkpoint.done:
        progress("deploy: note — the checkpoint is from an unfinished run")
    net.eval().cpu()
    grid = valid_grid(net, DEFAULT_GRID if options.gammas is None else tuple(sorted(set(options.gammas))))
    bundle = load_data(config, augment=False)
    # what scores and builds a candidate: the generation settings and, with eval.calibration, its images
    settings = {**generation_settings(config, options.samples), "images": calibration_data(config, bundle)}
    image_size = bundle.info.image_size
    names = net.block_names()
    widths = {(s, b): {net.hidden_widths(g)[(s, b)] for g in grid} for s, b in net.active()}
    table = latency.latency_table(
        run_dir, net.arch, net.active(), image_size, device, options.batch_size, options.threads, widths, progress
    )

    def cost_of(gamma):
        params, macs = net.params_macs(gamma, image_size)
        return params, macs, table.estimate(net.hidden_widths(gamma))

    validation = evaluation_data(net, bundle, "validation", config.data.eval_batch_size)
    evaluator = _evaluator(net, validation, settings, options.address)
    progress(
        f"deploy: budget {budget.describe()}; {len(names)} metamorphic block(s) ({', '.join(names)}); γ grid "
        f"{format_gamma(grid)}; K={settings['samples']} sample(s); {len(validation.labels)} validation images; "
        f"candidates evaluated {evaluator.name}"
    )
    result = search(
        net, evaluator, budget, grid, cost_of, max_candidates=options.candidates, seed=options.seed, progress=progress
    )
    if result.chosen is None:  # the grid's cheapest fits, so this is unreachable unless evaluation failed
        raise ConfigError(f"no evaluated configuration fits the budget of {budget.describe()}")
    progress(f"deploy: searched {len(result.candidates)} candidates in {result.seconds:.1f}s ({result.mode})")
    ranked = sorted(
        (c for c in result.candidates if c.cost(budget.kind) <= budget.limit),
        key=lambda c: (-c.accuracy, c.cost(budget.kind)),
    )
    chosen, measured = None, float("nan")
    for candidate in ranked[:5]:  # the table estimates latency; the network itself is measured and must fit
        model = materialize_like_evaluation(net, candidate.gamma, **settings)
        measured = _measure(model, image_size, device, options)
        if budget.kind != "latency_ms" or measured <= budget.limit:
            chosen = candidate
            break
        progress(
            f"deploy: γ={format_gamma(candidate.gamma)} measures {measured:.3f} ms (estimated "
            f"{candidate.latency_ms:.3f} ms), over the budget: trying the next best"
        )
    if chosen is None:
        raise ConfigError(
            f"the five best configurations within the estimated latency budget of {budget.describe()} "
            f"all measure over it on {table.description}; the last measured {measured:.3f} ms"
        )
    out = Path(options.output or paths.root / "deploy" / budget.tag())
    exported = export_network(
        net,
        config,
        checkpoint.dataset,
        chosen.gamma,
        out,
        samples=settings["samples"],
        source=str(paths.train_checkpoint),
        onnx=options.onnx,
    )
    loaded, spec = load_exported(out)
    final_latency = _measure(loaded, image_size, device, options)
    if budget.kind == "latency_ms" and final_latency > budget.limit:
        progress(
            f"deploy: warning — the exported network measured {final_latency:.3f} ms on the second "
            f"measurement, over the budget of {budget.describe()} (the first measured {measured:.3f} ms): the "
            f"machine's timing noise is of the order of the margin"
        )
    if options.report_test:
        test = evaluation_data(net, bundle, "test", config.data.eval_batch_size)
        members = {c.gamma: c for c in result.candidates if c.kind == "uniform"}
        for kind in ("macs", "latency_ms"):
            members.update({c.gamma: c for c in front_candidates(result.candidates, kind)})
        members[chosen.gamma] = chosen
        progress(
            f"deploy: reporting: {len(members)} configurations (uniform γ and the validation fronts) on "
            f"{len(test.labels)} test images"
        )
        scores = _evaluator(net, test, settings, options.address)(list(members))
        for candidate, (accuracy, loss, _) in zip(members.values(), scores, strict=True):
            candidate.test = {"accuracy": accuracy, "loss": loss}
    elif not chosen.test:
        test = evaluation_data(net, bundle, "test", config.data.eval_batch_size)
        accuracy, loss, _ = score_candidate(net, chosen.gamma, test, settings)
        chosen.test = {"accuracy": accuracy, "loss": loss}
    state = checkpoint.state
    identity = run_identity(config, run_id=paths.root.name, dataset=bundle.info.name)
    frame = pareto_rows(
        result.candidates,
        chosen,
        budget,
        net,
        identity,
        samples=settings["samples"],
        measured_latency_ms=final_latency,
        stage=state.stage,
        epoch=len(state.history),
        train_time_s=checkpoint.train_time_s,
    )
    table_file = write_table(frame, out, "pareto.parquet")
    summary = {
        "budget": {"kind": budget.kind, "limit": budget.limit, "text": budget.describe()},
        "gamma": spec["gamma"],
        "block_gammas": spec["block_gammas"],
        "hidden_widths": spec["hidden_widths"],
        "validation_accuracy": chosen.accuracy,
        "test_accuracy": chosen.test.get("accuracy"),
        "params": chosen.params,
        "macs": chosen.macs,
        "estimated_latency_ms": chosen.latency_ms,
        "measured_latency_ms": final_latency,
        "latency_device": table.description,
        "batch_size": options.batch_size,
        "threads": options.threads,
        "candidates": len(result.candidates),
        "search_seconds": result.seconds,
        "search": result.mode,
        "evaluated": evaluator.name,
        "grid": list(grid),
        "samples": settings["samples"],
        "files": {name: str(path) for name, path in {**exported, "pareto": table_file}.items()},
    }
    atomic_write_text(out / "deploy.json", json.dumps(summary, indent=2) + "\n")
    save_config(dataclasses.replace(config, run_dir=str(run_dir), deploy=options), out / "config.yaml")
    blocks = ", ".join(f"{block_name(s, b)} h={h}" for (s, b), h in net.hidden_widths(chosen.gamma).items())
    progress(
        f"deploy: chose γ={format_gamma(chosen.gamma)} ({blocks}): validation acc {chosen.accuracy:.4f} "
        f"(test {chosen.test.get('accuracy', float('nan')):.4f}, reported only), {format_cost('macs', chosen.macs)}, "
        f"{format_cost('params', chosen.params)}, latency {final_latency:.3f} ms measured "
        f"({chosen.latency_ms:.3f} ms estimated) on {table.description}, batch {options.batch_size}"
    )
    progress(
        f"deploy: wrote {out} (network.pt, network.json, network.pt2"
        + (", network.onnx" if "onnx" in exported else "")
        + ", pareto.parquet, deploy.json, config.yaml)"
    )
    if "onnx" not in exported and options.onnx is not False:
        progress(f"deploy: note — {ONNX_MISSING}")
    return summary


def _measure(model, image_size: int, device: torch.device, options: DeployConfig) -> float:
    """The latency (ms) of ``model`` as the deployment states it: ``options``' device, batch size and threads."""
    with latency.torch_threads(options.threads):
        try:
            return latency.measure_network(model, image_size, device, options.batch_size, latency.FINAL_SECONDS)
        finally:
            model.cpu()


def _evaluator(net, data, settings: dict, address: str | None):
    if importlib.util.find_spec("ray") is not None:
        import ray  # only when installed, and only here: see RayEvaluator

        if address and not ray.is_initialized():
            ray.init(address=address)
        if ray.is_initialized():
            return RayEvaluator(net, data, settings)
    return LocalEvaluator(net, data, settings)


def pareto_rows(
    candidates: list[Candidate],
    chosen: Candidate,
    budget: Budget,
    net,
    identity: RunIdentity,
    *,
    samples: int,
    measured_latency_ms: float,
    stage: int,
    epoch: int,
    train_time_s: float,
) -> pd.DataFrame:
    """Every candidate as a results row on the validation split (and on test where it was evaluated there), with
    ``gamma.<block>`` / ``width.<block>`` columns, the estimated latency, how it was found and whether it is within
    the budget (``search_status``: chosen, within budget, over budget). A per-block row has no single γ (NaN) and
    is ``seen`` when every block's γ lies in the training pool."""
    names = net.block_names()
    rows = []
    for candidate in sorted(candidates, key=lambda c: (c.macs, format_gamma(c.gamma))):
        gammas = block_gammas(candidate.gamma, names)
        hidden = net.hidden_widths(candidate.gamma)
        status = (
            "chosen"
            if candidate is chosen
            else "within budget"
            if candidate.cost(budget.kind) <= budget.limit
            else "over budget"
        )
        base = {
            "gamma": candidate.gamma if candidate.kind == "uniform" else float("nan"),
            "seen": all(identity.seen(g) for g in gammas),
            "samples": samples,
            "params": candidate.params,
            "macs": candidate.macs,
            "wall_time_s": candidate.seconds,
            "latency_ms": candidate.latency_ms,
            "measured_latency_ms": measured_latency_ms if candidate is chosen else float("nan"),
            "search_kind": candidate.kind,
            "search_status": status,
            "budget": f"{budget.kind}<={budget.limit:g}",
            **{f"gamma.{name}": g for name, g in zip(names, gammas, strict=True)},
            **{f"width.{block_name(s, b)}": h for (s, b), h in hidden.items()},
        }
        rows.append({**base, "split": "validation", "accuracy": candidate.accuracy, "loss": candidate.loss})
        if candidate.test:
            rows.append(
                {**base, "split": "test", "accuracy": candidate.test["accuracy"], "loss": candidate.test["loss"]}
            )
    return result_frame(rows, identity, stage=stage, epoch=epoch, split="validation", train_time_s=train_time_s)
