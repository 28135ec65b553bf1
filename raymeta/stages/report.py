"""The HTML report: a pure function of result tables (same rows → byte-identical page).

One self-contained page, plotly.js inlined once (opens offline, no CDN): accuracy against γ for every
method with the training pool shaded and unseen γ marked; parameters and MACs against γ; training
curves per stage from ``phase == "train"`` rows, and the method's health signals (α per block, relative
reconstruction error per tensor at γ = 0) from their ``alpha.``/``rec.`` columns; a paper-style table
(methods × γ, training cost) that flags a metamorphic or NeuMeta result not clearly above the skip
baseline; and a view of Ray Tune trials when the rows carry ``trial_id``. Nothing is read but the rows
given, and nothing time- or machine-dependent is written (figure ids are fixed, rows are sorted).

Splits are never mixed: the method comparison (accuracy against γ, methods × γ, sizes) shows final rows of
the test split, the training curves show monitor rows of the validation split, and the Tune trials are
ranked by their final validation rows (test reported beside). A section whose preferred split is absent
shows the other one, labelled as such (e.g. tables written before the validation split: test throughout).
"""

from __future__ import annotations

import html
import math
from fractions import Fraction
from pathlib import Path

import pandas as pd

from raymeta.config.schema import Config
from raymeta.io.files import RunPaths, StoragePath, atomic_write_text, location
from raymeta.io.progress import Progress
from raymeta.io.results import (
    ALPHA_PREFIX,
    BALANCE_AT_ZERO_PREFIX,
    BALANCE_PREFIX,
    PARAM_PREFIX,
    REC_PREFIX,
    ResultsError,
    read_tables,
    table_paths,
    validate_frame,
)
from raymeta.io.tracking import log_run_files
from raymeta.method.models import block_name, block_of_path

METHOD_ORDER = (
    "metamorphic",
    "metamorphic-inr-off",
    "recipe",
    "neumeta",
    "individual",
    "slimmable",
    "merge",
    "skip",
)
"""Methods listed first, in this order; the rest (pruning variants, …) follow alphabetically."""

REFERENCE_METHOD = "skip"
"""The floor: the prior without its metamorphic blocks (α = 0), one network at every γ; drawn dashed."""

CHECKED_METHODS = ("metamorphic", "recipe", "neumeta")
"""Methods whose results the paper table flags when they do not clear the reference by more than the noise."""

LARGEST_TEST_SET = 1_000_000
"""Bound on the number of test images recovered from a run's accuracies (see :func:`image_count`)."""

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
)
STAGE_COLOURS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#b5a000", "#e8590c", "#c2255c", "#6741d9", "#0b7285")

PLOT_CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1150px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.8rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f4f6; } td.best { font-weight: 700; }
.note { color: #555; font-size: 0.88rem; } .figure { margin: 0.5rem 0 1rem; }
code { background: #f3f4f6; padding: 0 0.25rem; }
.warn { color: #9a3412; background: #fff7ed; border-left: 3px solid #ea580c; padding: 0.3rem 0.6rem; }
"""


def method_order(methods) -> list[str]:
    methods = sorted(set(methods))
    return [m for m in METHOD_ORDER if m in methods] + [m for m in methods if m not in METHOD_ORDER]


def method_colours(methods: list[str]) -> dict[str, str]:
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(m for m in methods if m != REFERENCE_METHOD)}
    if REFERENCE_METHOD in methods:
        colours[REFERENCE_METHOD] = "#555555"
    return colours


def line_style(method: str, colour: str) -> dict:
    return {"color": colour, "dash": "dash"} if method == REFERENCE_METHOD else {"color": colour}


def final_rows(frame: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Final evaluations on ``split``; a model evaluated twice with the same K counts once (its last table wins)."""
    rows = frame[(frame["phase"] == "final") & (frame["split"] == split)]
    return rows.drop_duplicates(["run_id", "method", "gamma", "samples"], keep="last")


def train_rows(frame: pd.DataFrame, split: str = "validation") -> pd.DataFrame:
    """Training-monitor rows on ``split``, one per (run, method, stage, epoch, γ)."""
    rows = frame[(frame["phase"] == "train") & (frame["split"] == split)]
    return rows.drop_duplicates(["run_id", "method", "stage", "epoch", "gamma"], keep="last")


def shown_split(frame: pd.DataFrame, phase: str, preferred: str) -> str | None:
    """The one split a section shows of the ``phase`` rows: ``preferred`` if present, else the split the rows
    have (None: no rows of that phase)."""
    present = set(frame.loc[frame["phase"] == phase, "split"])
    if not present:
        return None
    return preferred if preferred in present else sorted(present)[0]


def _left_out_note(frame: pd.DataFrame, phase: str, shown: str, what: str) -> str:
    """A note naming the rows of ``phase`` on other splits than ``shown`` (empty when there are none)."""
    others = frame[(frame["phase"] == phase) & (frame["split"] != shown)]
    if others.empty:
        return ""
    counts = ", ".join(
        f"{count} on the {split} split" for split, count in sorted(others["split"].value_counts().items())
    )
    return (
        f'<p class="note">{html.escape(what)} show the {shown} split only; {counts} (phase = {phase}) '
        f"are not shown, so that splits are never mixed.</p>"
    )


def summarise(final: pd.DataFrame) -> pd.DataFrame:
    """Per (method, γ): mean/std/count of accuracy over runs, mean params and MACs, whether γ was seen."""
    grouped = final.groupby(["method", "gamma"], sort=True)
    out = grouped.agg(
        accuracy=("accuracy", "mean"),
        std=("accuracy", "std"),
        n=("accuracy", "size"),
        loss=("loss", "mean"),
        params=("params", "mean"),
        macs=("macs", "mean"),
        seen=("seen", "all"),
        samples=("samples", "max"),
    )
    return out.reset_index()


def training_cost(final: pd.DataFrame) -> pd.Series:
    """Seconds of training per method: each distinct model (run_id) counted once, at its largest cost."""
    per_run = final.groupby(["method", "run_id"])["train_time_s"].max()
    return per_run.groupby("method").sum(min_count=1)


def training_pool(final: pd.DataFrame) -> tuple[float, float] | None:
    seen = final.loc[final["seen"], "gamma"]
    return (float(seen.min()), float(seen.max())) if len(seen) else None


def _figure_html(figure, div_id: str) -> str:
    import plotly.io as pio

    return (
        '<div class="figure">'
        + pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOT_CONFIG, validate=True)
        + "</div>"
    )


def accuracy_figure(
    summary: pd.DataFrame,
    pool,
    methods: list[str],
    colours: dict[str, str],
    split: str = "test",
    costs: pd.Series | None = None,
):
    """Accuracy on ``split`` against γ, one line per method, the training pool shaded, unseen γ open markers;
    with ``costs`` (:func:`training_cost`), each legend entry names its method's training cost."""
    import plotly.graph_objects as go

    figure = go.Figure()
    if pool is not None:
        figure.add_vrect(
            x0=pool[0],
            x1=pool[1],
            fillcolor="#4c78a8",
            opacity=0.12,
            line_width=0,
            layer="below",
            annotation_text="training pool",
            annotation_position="top left",
        )
    for method in methods:
        rows = summary[summary["method"] == method]
        std = rows["std"].fillna(0.0) * 100
        figure.add_trace(
            go.Scatter(
                x=rows["gamma"],
                y=rows["accuracy"] * 100,
                name=_with_cost(method, costs),
                mode="lines+markers",
                line=line_style(method, colours[method]),
                error_y={"type": "data", "array": std, "visible": bool((rows["n"] > 1).any())},
                marker={
                    "size": 9,
                    "symbol": ["circle" if s else "circle-open" for s in rows["seen"]],
                    "line": {"width": 2, "color": colours[method]},
                },
                customdata=list(
                    zip(rows["n"], ["seen" if s else "unseen" for s in rows["seen"]], rows["samples"], strict=True)
                ),
                hovertemplate="γ=%{x:.3f}<br>accuracy %{y:.2f}%<br>%{customdata[1]}, runs=%{customdata[0]}, "
                "K=%{customdata[2]}<extra>" + html.escape(method) + "</extra>",
            )
        )
    unseen = sorted(set(summary.loc[~summary["seen"], "gamma"]))
    if unseen:  # a legend entry that explains the open markers
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name="unseen γ (open marker)",
                marker={"symbol": "circle-open", "size": 9, "color": "#444"},
            )
        )
    figure.update_layout(
        title=f"Top-1 {split} accuracy against compression ratio γ",
        xaxis_title="compression ratio γ (hidden width = round((1−γ)·C))",
        yaxis_title=f"{split} accuracy (%)",
        height=520,
        template="plotly_white",
        legend={"orientation": "v"},
        margin={"t": 60},
    )
    return figure


def _with_cost(method: str, costs: pd.Series | None) -> str:
    """``method`` with its training cost, e.g. "metamorphic (training 4.2 min)" (the method alone when unknown)."""
    seconds = float("nan") if costs is None else float(costs.get(method, float("nan")))
    return f"{method} (training {_format_seconds(seconds)})" if math.isfinite(seconds) else method


def size_figure(summary: pd.DataFrame, methods: list[str], colours: dict[str, str]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("parameters", "MACs per image"))
    for method in methods:
        rows = summary[summary["method"] == method]
        for column, key in ((1, "params"), (2, "macs")):
            figure.add_trace(
                go.Scatter(
                    x=rows["gamma"],
                    y=rows[key],
                    name=method,
                    legendgroup=method,
                    showlegend=column == 1,
                    mode="lines+markers",
                    line=line_style(method, colours[method]),
                ),
                row=1,
                col=column,
            )
    figure.update_xaxes(title_text="compression ratio γ")
    figure.update_layout(
        title="Network size against γ (inference network, BatchNorm folded)", height=430, template="plotly_white"
    )
    return figure


def training_figure(train: pd.DataFrame, methods: list[str], split: str = "validation"):
    """Per-epoch accuracy on ``split`` (the monitor rows), one panel per method, a curve per stage and γ."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    methods = [m for m in methods if m in set(train["method"])]
    columns = 2 if len(methods) > 1 else 1
    rows_count = math.ceil(len(methods) / columns)
    figure = make_subplots(rows=rows_count, cols=columns, subplot_titles=methods, vertical_spacing=0.12)
    legend_seen: set[str] = set()
    for index, method in enumerate(methods):
        rows = train[train["method"] == method].sort_values(["run_id", "stage", "gamma", "epoch"])
        by_stage = rows["stage"].nunique() > 1
        gammas = sorted(set(rows["gamma"]))
        for (run_id, stage, gamma), curve in rows.groupby(["run_id", "stage", "gamma"], sort=True):
            if by_stage:
                label, colour = f"stage {stage + 1}", STAGE_COLOURS[int(stage) % len(STAGE_COLOURS)]
                dash = ("solid", "dot", "dash", "dashdot")[gammas.index(gamma) % 4]
                name = f"{label}, γ={gamma:g}"
            else:
                colour = PALETTE[gammas.index(gamma) % len(PALETTE)]
                dash, name = "solid", f"γ={gamma:g}"
            figure.add_trace(
                go.Scatter(
                    x=curve["epoch"],
                    y=curve["accuracy"] * 100,
                    mode="lines+markers",
                    name=name,
                    legendgroup=f"{method}:{name}",
                    showlegend=(method, name) not in legend_seen,
                    line={"color": colour, "dash": dash},
                    marker={"size": 4},
                    hovertemplate=f"{html.escape(str(run_id))}<br>{html.escape(name)}<br>epoch %{{x}}"
                    "<br>accuracy %{y:.2f}%<extra></extra>",
                ),
                row=index // columns + 1,
                col=index % columns + 1,
            )
            legend_seen.add((method, name))
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text=f"{split} accuracy (%)")
    figure.update_layout(
        title=f"Training curves on the {split} split (phase = train rows; colour = stage of incremental training)",
        height=max(380, 330 * rows_count),
        template="plotly_white",
    )
    return figure


HEALTH_SIGNALS = {
    ALPHA_PREFIX: ("α per metamorphic block against epoch", "residual scale α", 0.0, "α = 0: the block is off", False),
    REC_PREFIX: (
        "Relative reconstruction error at γ = 0 per generated tensor against epoch",
        "‖W_gen − W_prior‖ / ‖W_prior‖",
        1.0,
        "1: no closer than zeros",
        False,
    ),
    BALANCE_PREFIX: (
        "Loss balance at γ = 0 per generated tensor against epoch: reconstruction pull / regulariser pull",
        "‖λ_rec·∂rec/∂W‖ / (M·λ_reg)",
        1.0,
        "below 1: the regulariser wins",
        True,
    ),
    BALANCE_AT_ZERO_PREFIX: (
        "The same balance at W = 0 per generated tensor against epoch",
        "‖λ_rec·∂rec/∂W‖ at W = 0 / (M·λ_reg)",
        1.0,
        "at or below 1: W = 0 minimises rec + reg",
        True,
    ),
}
"""Column prefix → (title, y-axis title, reference level, what the level means, logarithmic y axis) of the
health figures."""

HEALTH_FIGURE_IDS = {
    ALPHA_PREFIX: "fig-alpha",
    REC_PREFIX: "fig-reconstruction",
    BALANCE_PREFIX: "fig-balance",
    BALANCE_AT_ZERO_PREFIX: "fig-balance-at-zero",
}

TENSOR_DASHES = {
    "conv1.weight": "solid",
    "conv1.bias": "dot",
    "conv2.weight": "dash",
    "conv2.bias": "dashdot",
    "conv3.weight": "longdash",  # a Bottleneck's third conv
    "conv3.bias": "longdashdot",
}


def _natural_key(text: str) -> tuple:
    """Sort stage3.block10 after stage3.block2."""
    import re

    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _block_of(name: str) -> str:
    """``stage3.block1`` for an α column's name, or for a tensor path ``stages.2.1.conv1.weight`` (or
    ``layer3.1.conv1.weight``)."""
    position = block_of_path(name)
    return name if position is None else block_name(*position)


def health_figure(train: pd.DataFrame, prefix: str):
    """The ``prefix`` columns of monitor rows (α per block, or relative error per tensor) against epoch: a line
    per run and column, coloured by block (a tensor's line dashed by its kind). None when no row carries one."""
    import plotly.graph_objects as go

    columns = sorted((c for c in train.columns if c.startswith(prefix) and train[c].notna().any()), key=_natural_key)
    if not columns:
        return None
    title, axis, level, meaning, logarithmic = HEALTH_SIGNALS[prefix]
    # The signals are the epoch's, repeated on each of its γ rows: one point per epoch.
    epochs = train.drop_duplicates(["method", "run_id", "epoch"]).sort_values(["method", "run_id", "epoch"])
    blocks = sorted({_block_of(c[len(prefix) :]) for c in columns}, key=_natural_key)
    several = epochs[["method", "run_id"]].drop_duplicates().shape[0] > 1
    figure = go.Figure()
    if logarithmic:  # the level as a trace: a shape's position on a log axis is read differently across plotly.js
        span = [epochs["epoch"].min(), epochs["epoch"].max()]
        figure.add_trace(
            go.Scatter(x=span, y=[level] * 2, mode="lines", name=meaning, line={"color": "#999", "dash": "dot"})
        )
    else:
        figure.add_hline(
            y=level, line={"color": "#999", "dash": "dot"}, annotation_text=meaning, annotation_position="bottom right"
        )
    for (method, run_id), rows in epochs.groupby(["method", "run_id"], sort=True):
        for column in columns:
            points = rows[["epoch", column]].dropna()  # none before the block became active
            if points.empty:
                continue
            name = column[len(prefix) :]
            block = _block_of(name)
            dash = next((d for kind, d in TENSOR_DASHES.items() if name.endswith(kind)), "solid")
            label = f"{run_id} ({method}): {name}" if several else name
            figure.add_trace(
                go.Scatter(
                    x=points["epoch"],
                    y=points[column],
                    mode="lines+markers",
                    name=label,
                    legendgroup=block,
                    line={"color": PALETTE[blocks.index(block) % len(PALETTE)], "dash": dash},
                    marker={"size": 4},
                    hovertemplate=f"{html.escape(label)}<br>epoch %{{x}}<br>%{{y:.4f}}<extra></extra>",
                )
            )
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text=axis, type="log" if logarithmic else "linear")
    figure.update_layout(title=title, height=420, template="plotly_white")
    return figure


def _format_seconds(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def image_count(accuracies) -> int | None:
    """How many images (at least) the accuracies of one run were measured on; None when that passes
    :data:`LARGEST_TEST_SET` (they were not measured on one set).

    Each accuracy is correct/n, so n is a multiple of its reduced denominator, and of the least common multiple
    of them all, which is returned: n itself unless every count shares a factor with n. Too small an n only
    widens the noise it gives, so a result is never passed for one too few images.
    """
    images = 1
    for accuracy in accuracies:
        if math.isfinite(accuracy):
            images = math.lcm(images, Fraction(float(accuracy)).limit_denominator(LARGEST_TEST_SET).denominator)
            if images > LARGEST_TEST_SET:
                return None
    return images


def skip_check(summary: pd.DataFrame, final: pd.DataFrame) -> list[dict]:
    """Every result of a :data:`CHECKED_METHODS` method at a γ where the reference (skip) has one: its margin over
    the reference, the noise it must clear, and whether it is flagged (margin ≤ noise).

    Noise: the std over the method's runs where it has several at that γ, else two binomial standard errors
    2·√(p(1−p)/n) of its accuracy p, with n from :func:`image_count` over its run's rows. Unknown noise (n not
    recoverable) flags only a result at or below the reference.
    """
    reference = {
        round(g, 9): a
        for g, a in summary.loc[summary["method"] == REFERENCE_METHOD, ["gamma", "accuracy"]].itertuples(index=False)
    }
    images = {run: image_count(group) for run, group in final.groupby("run_id")["accuracy"]}
    checked = []
    for row in summary[summary["method"].isin(CHECKED_METHODS)].itertuples(index=False):
        floor = reference.get(round(row.gamma, 9))
        if floor is None:
            continue
        if row.n > 1:
            noise, rule = float(row.std), f"std over {row.n} runs"
        else:
            run = final.loc[(final["method"] == row.method) & (final["gamma"] == row.gamma), "run_id"].iloc[0]
            count = images[run]
            if count is None:
                noise, rule = float("nan"), "noise unknown: the number of images could not be recovered"
            else:
                noise = 2 * math.sqrt(row.accuracy * (1 - row.accuracy) / count)
                rule = f"two binomial standard errors, n ≥ {count} images"
        margin = row.accuracy - floor
        flagged = margin <= (noise if math.isfinite(noise) else 0.0)
        checked.append(
            {
                "method": row.method,
                "gamma": row.gamma,
                "accuracy": row.accuracy,
                "reference": floor,
                "margin": margin,
                "noise": noise,
                "rule": rule,
                "flagged": flagged,
            }
        )
    return checked


def _skip_note(checked: list[dict], split: str) -> str:
    """The paragraph under the paper table: which results do not clear skip, and the rule that says so."""
    rule = (
        f"A {' or '.join(CHECKED_METHODS)} result is flagged ⚠ when it does not beat {REFERENCE_METHOD} (the prior "
        "with its metamorphic blocks removed, i.e. every α = 0, its fine-tuned part trained alike) at the same γ "
        "by more than the run-to-run noise: the std over runs where the method has several at that γ, else two "
        f"binomial standard errors 2·√(p(1−p)/n) of its {split} accuracy p. n is recovered from the run's own "
        "accuracies (each is correct/n, so n is at least the least common denominator of its accuracies; that "
        "bound is used, which can only widen the noise)."
    )
    flagged = [c for c in checked if c["flagged"]]
    if not flagged:
        what = sorted({c["method"] for c in checked}, key=CHECKED_METHODS.index)
        return (
            f'<p class="note">Every {" and ".join(what)} result clears {REFERENCE_METHOD} by more than the noise '
            f"at every γ where both have one. {html.escape(rule)}</p>"
        )
    items = []
    for c in flagged:
        noise = f"{c['noise'] * 100:.2f} points" if math.isfinite(c["noise"]) else "unknown"
        items.append(
            f"<li>{html.escape(c['method'])} at γ={c['gamma']:g}: {c['accuracy'] * 100:.2f}% against "
            f"{c['reference'] * 100:.2f}% ({c['margin'] * 100:+.2f} points; noise {noise}: "
            f"{html.escape(c['rule'])})</li>"
        )
    return (
        f'<div class="warn">⚠ Not clearly above {REFERENCE_METHOD} ({len(flagged)} of {len(checked)} results '
        f'checked):<ul>{"".join(items)}</ul></div>\n<p class="note">{html.escape(rule)}</p>'
    )


def paper_table(summary: pd.DataFrame, final: pd.DataFrame, methods: list[str], split: str = "test") -> str:
    """Methods × γ accuracy on ``split`` (mean ± std over runs), with each method's training cost; a result that
    does not clear the skip baseline by more than the noise is flagged ⚠ (see :func:`skip_check`)."""
    checked = skip_check(summary, final)
    flags = {(c["method"], round(c["gamma"], 9)) for c in checked if c["flagged"]}
    gammas = sorted(set(summary["gamma"]))
    unseen = set(summary.loc[~summary["seen"], "gamma"])
    best = summary.groupby("gamma")["accuracy"].max()
    cost = training_cost(final)
    models = final.groupby("method")["run_id"].nunique()
    head = "".join(f"<th>γ={g:g}{' †' if g in unseen else ''}</th>" for g in gammas)
    lines = [
        f'<table class="paper"><thead><tr><th>method</th>{head}<th>training cost</th><th>models</th></tr>'
        "</thead><tbody>"
    ]
    for method in methods:
        rows = summary[summary["method"] == method].set_index("gamma")
        cells = []
        for gamma in gammas:
            if gamma not in rows.index:
                cells.append("<td>–</td>")
                continue
            row = rows.loc[gamma]
            text = f"{row['accuracy'] * 100:.2f}"
            if row["n"] > 1:
                text += f" ± {row['std'] * 100:.2f}"
            if (method, round(gamma, 9)) in flags:
                text += " ⚠"
            marker = ' class="best"' if abs(row["accuracy"] - best[gamma]) < 1e-12 else ""
            cells.append(f"<td{marker}>{text}</td>")
        note = " ‡" if method not in ("individual",) else ""
        lines.append(
            f"<tr><td>{html.escape(method)}</td>{''.join(cells)}"
            f"<td>{_format_seconds(cost.get(method, float('nan')))}{note}</td><td>{models.get(method, 0)}</td></tr>"
        )
    lines.append("</tbody></table>")
    if checked:
        lines.append(_skip_note(checked, split))
    lines.append(
        f'<p class="note">Top-1 {split} accuracy (%); mean ± std where a method has several runs at a γ; '
        "bold: best at that γ. † unseen γ (outside the training pool of the metamorphic network). "
        "Training cost: the training seconds recorded in the rows, each model counted once "
        "(a metamorphic network is one model for every γ; individual and pruned networks are one model "
        "per γ). ‡ does not include the prior's pretraining, which metamorphic, NeuMeta and pruned "
        "networks all start from; pruning cost is the importance's gradients plus the fine-tune. slimmable and "
        "the +ft-equal pruning rows were given the metamorphic run's training time (slimmable all of it, each "
        "+ft-equal network its share over the pruned widths); merge trains nothing; an -inr-off row is the "
        "trained run itself with its INRs' correction switched off, so its cost is the run's.</p>"
    )
    return "\n".join(lines)


def tune_section(trials: pd.DataFrame) -> tuple[str, object | None]:
    """A table of trials ranked by validation accuracy, and a scatter of that score per tuned parameter.

    ``trials`` are the rows of Tune trials. A trial's score is its mean final validation accuracy over its
    seen γ (what chose best.yaml); its test accuracy is shown beside it and never ranks.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    validation, test = final_rows(trials, "validation"), final_rows(trials, "test")
    if validation.empty and test.empty:
        return '<p class="note">The tables have a trial_id column but no final rows of a trial.</p>', None
    both = pd.concat([validation, test], ignore_index=True)
    params = sorted(c for c in both.columns if c.startswith(PARAM_PREFIX))
    grouped = both.groupby("trial_id", sort=True)
    table = grouped.agg(
        gammas=("gamma", "nunique"),
        method=("method", "first"),
        train_time_s=("train_time_s", "max"),
        epochs=("epoch", "max"),
    )
    table["score"] = validation[validation["seen"]].groupby("trial_id")["accuracy"].mean()
    table["test_seen"] = test[test["seen"]].groupby("trial_id")["accuracy"].mean()
    table["test_all"] = test.groupby("trial_id")["accuracy"].mean()
    table["status"] = grouped["trial_status"].first().fillna("") if "trial_status" in both.columns else ""
    for column in params:
        table[column] = grouped[column].first()
    table = table.reset_index().sort_values(["score", "trial_id"], ascending=[False, True], na_position="last")
    head = "".join(f"<th>{html.escape(c[len(PARAM_PREFIX) :])}</th>" for c in params)
    lines = [
        f'<table class="tune"><thead><tr><th>trial</th><th>method</th>{head}<th>validation acc. seen γ</th>'
        f"<th>test acc. seen γ</th><th>test acc. all γ</th><th>γ values</th><th>status</th><th>epochs</th>"
        f"<th>training</th></tr></thead><tbody>"
    ]
    for row in table.itertuples(index=False):
        values = row._asdict()
        cells = "".join(f"<td>{html.escape(_format_value(values[_field(c, table)]))}</td>" for c in params)
        lines.append(
            f"<tr><td>{html.escape(str(row.trial_id))}</td><td>{html.escape(str(row.method))}</td>{cells}"
            f"<td>{_percent(row.score)}</td><td>{_percent(row.test_seen)}</td><td>{_percent(row.test_all)}</td>"
            f"<td>{row.gammas}</td><td>{html.escape(str(row.status or ''))}</td><td>{row.epochs}</td>"
            f"<td>{_format_seconds(row.train_time_s)}</td></tr>"
        )
    lines.append("</tbody></table>")
    lines.append(
        '<p class="note">Trials are ranked by their mean final validation accuracy over the seen γ, '
        "which is also what chose the sweep's best.yaml; test accuracy is reported beside it and never "
        "used to choose. – : the trial has no final rows on that split.</p>"
    )
    if not params:
        return "\n".join(lines), None
    figure = make_subplots(
        rows=1, cols=len(params), shared_yaxes=True, subplot_titles=[c[len(PARAM_PREFIX) :] for c in params]
    )
    for index, column in enumerate(params):
        figure.add_trace(
            go.Scatter(
                x=table[column],
                y=table["score"] * 100,
                mode="markers",
                showlegend=False,
                text=table["trial_id"],
                marker={"size": 10, "color": PALETTE[0]},
                hovertemplate="%{text}<br>%{x}<br>%{y:.2f}%<extra></extra>",
            ),
            row=1,
            col=index + 1,
        )
        values = pd.to_numeric(table[column], errors="coerce")
        if (
            table[column].dtype != bool
            and values.notna().all()
            and (values > 0).all()
            and values.max() > 100 * values.min()
        ):
            figure.update_xaxes(type="log", row=1, col=index + 1)
    figure.update_yaxes(title_text="mean validation accuracy over seen γ (%)", col=1)
    figure.update_layout(
        title="Tune trials: validation score against each tuned parameter", height=420, template="plotly_white"
    )
    return "\n".join(lines), figure


def _field(column: str, table: pd.DataFrame) -> str:
    # itertuples renames columns that are not identifiers (param.x) to _N
    return f"_{list(table.columns).index(column)}"


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _percent(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value * 100:.2f}%"


def _overview(frame: pd.DataFrame) -> str:
    def values(column: str) -> str:
        return ", ".join(html.escape(str(v)) for v in sorted(set(frame[column].astype(str))))

    final, train = (frame["phase"] == "final").sum(), (frame["phase"] == "train").sum()
    splits = "; ".join(
        f"{count} on the {split} split" for split, count in sorted(frame["split"].value_counts().items())
    )
    return (
        f"<p>{len(frame)} rows ({final} final evaluations, {train} training-monitor rows; {splits}) from "
        f"{frame['run_id'].nunique()} run(s). Dataset: {values('dataset')}; architecture: "
        f"{values('architecture')}; git commit(s): {values('git_commit')}.</p>"
    )


def build_report(frame: pd.DataFrame, *, title: str = "raymeta report") -> str:
    """The report page as one HTML string (a pure function of the rows and the title)."""
    frame = validate_frame(frame, "report input")
    if frame.empty:
        raise ResultsError("the results tables hold no rows: nothing to report")
    sort_keys = ["method", "run_id", "phase", "split", "stage", "epoch", "gamma", "samples"]
    frame = frame.sort_values(sort_keys, kind="stable").reset_index(drop=True)
    from raymeta.stages.deploy_report import deploy_section, search_rows

    searched = search_rows(frame)  # raymeta deploy's candidates: their own section, never in the γ comparison
    if searched.all():
        body = [f"<h1>{html.escape(title)}</h1>", _overview(frame)]
        return _page(title, body + deploy_section(frame, frame.iloc[0:0], _figure_html))
    deployments, frame = frame[searched], frame[~searched].reset_index(drop=True)
    trials = frame["trial_id"].notna() if "trial_id" in frame.columns else pd.Series(False, index=frame.index)
    # Tune trials get their own view; the method comparison uses the other runs (or the trials, if alone).
    compared = frame[~trials] if (~trials).any() else frame
    # Each section shows one split: final rows on test, monitor rows on validation (else what there is).
    final_split = shown_split(compared, "final", "test")
    train_split = shown_split(compared, "train", "validation")
    methods = method_order(frame["method"])
    colours = method_colours(methods)
    body = [f"<h1>{html.escape(title)}</h1>", _overview(frame)]
    if final_split is None:
        body.append('<p class="note">No final evaluations (phase = final) in these tables.</p>')
    else:
        final = final_rows(compared, final_split)
        summary = summarise(final)
        final_methods = [m for m in methods if m in set(final["method"])]
        body += [
            f"<h2>Accuracy against γ ({final_split} split)</h2>",
            _left_out_note(compared, "final", final_split, "The comparison of methods and sizes"),
            _figure_html(
                accuracy_figure(
                    summary, training_pool(final), final_methods, colours, final_split, training_cost(final)
                ),
                "fig-accuracy",
            ),
            f"<h2>Methods × γ ({final_split} split)</h2>",
            paper_table(summary, final, final_methods, final_split),
            "<h2>Parameters and MACs against γ</h2>",
            _figure_html(size_figure(summary, final_methods, colours), "fig-size"),
        ]
    body.append("<h2>Training curves" + (f" ({train_split} split)" if train_split else "") + "</h2>")
    if train_split is None:
        body.append('<p class="note">No training-monitor rows (phase = train) in these tables.</p>')
    else:
        monitor = train_rows(compared, train_split)
        body += [
            _left_out_note(compared, "train", train_split, "The training curves"),
            _figure_html(training_figure(monitor, methods, train_split), "fig-training"),
        ]
        figures = {prefix: health_figure(monitor, prefix) for prefix in HEALTH_SIGNALS}
        if any(figure is not None for figure in figures.values()):
            body.append(
                '<p class="note">The method\'s health, once per epoch on the weights the monitor '
                "evaluates: α of each metamorphic block (0: the block is off, as in the skip baseline), and "
                "the relative RMS error of each generated tensor at γ = 0 against the smoothed prior (0: a "
                "perfect copy; 1: no closer than generating zeros), and the loss balance of each tensor: the "
                "reconstruction term's pull towards the prior over the regulariser's pull towards zero, at the "
                "current weights and at W = 0 (below 1 the regulariser wins; at W = 0, at or below 1 zero is the "
                "minimiser of the two, and the tensor is learned through the task loss only, that is through "
                "α).</p>"
            )
        for prefix, figure in figures.items():
            if figure is not None:
                body.append(_figure_html(figure, HEALTH_FIGURE_IDS[prefix]))
    if "trial_id" in frame.columns:
        table, figure = tune_section(frame[trials])
        body += ["<h2>Tune trials</h2>", table]
        if figure is not None:
            body.append(_figure_html(figure, "fig-tune"))
    if not deployments.empty:
        body += deploy_section(deployments, compared, _figure_html)
    return _page(title, body)


def _page(title: str, body: list[str]) -> str:
    import plotly
    import plotly.offline

    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="generator" content="raymeta report (plotly {plotly.__version__})">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n</head>\n<body>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(
    frame: pd.DataFrame, output: str | Path | StoragePath, *, title: str = "raymeta report"
) -> Path | StoragePath:
    """Write the report atomically (a temporary name, then rename), locally or to object storage."""
    output = location(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise ResultsError(f"report output {output} must end in .html")
    page = build_report(frame, title=title)
    atomic_write_text(output, page)
    return output


def run_report(config: Config, progress: Progress) -> Path:
    """The last stage of ``raymeta run``: RUN_DIR/report.html from the run's own result tables."""
    paths = RunPaths(config.run_dir)
    output = write_report(read_tables(paths.results), paths.report, title=f"raymeta run {paths.root.name}")
    progress(f"report: {output} (open it in a browser; `raymeta report` combines runs and baselines)")
    log_run_files(config, [output])
    return output


def report_tables(
    tables: list[str], output: str | Path | StoragePath, progress: Progress, *, title: str = "raymeta report"
) -> Path | StoragePath:
    """``raymeta report``: a self-contained HTML page from result tables (nothing else is read)."""
    paths = table_paths(tables)
    frame = read_tables(paths)
    output = write_report(frame, output, title=title)
    progress(f"report: {len(frame)} rows from {len(paths)} table(s) → {output} ({output.stat().st_size / 1e6:.1f} MB)")
    return output
