"""The report's deployment section: accuracy against MACs and against latency for the rows of a deployment
search (``raymeta deploy``'s ``pareto.parquet``: rows carrying ``gamma.<block>`` columns), beside the Individual
and pruning baselines of the same tables.

A pure function of the rows, like the rest of the report. Splits are never mixed: the search (every candidate,
the uniform γ curve, the per-block front, the chosen network and the budget) is drawn on the validation split
it chose on; the test-split figure, drawn where the search was also evaluated on test (``--report-test``), puts
the uniform curve, the per-block front and the baselines' test rows on the same axes. A baseline network has
exactly the shape of a uniform-γ network of the search (the same MACs and parameters, less the α scalars), so its
latency is that row's; a baseline of no searched shape (a run with other metamorphic blocks) is not drawn.
"""

from __future__ import annotations

import html

import pandas as pd

from raymeta.io.results import GAMMA_PREFIX, WIDTH_PREFIX
from raymeta.method.pareto import pareto_front

BASELINES = ("individual", "prune-")
"""Methods drawn beside the search: Individual and every pruning variant."""

COLOURS = {"uniform": "#1f77b4", "front": "#d62728", "candidate": "#b0b0b0", "chosen": "#2ca02c"}
BASELINE_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79")


def search_rows(frame: pd.DataFrame) -> pd.Series:
    """Which rows come from a deployment search (they carry per-block γ)."""
    columns = [c for c in frame.columns if isinstance(c, str) and c.startswith(GAMMA_PREFIX)]
    if not columns:
        return pd.Series(False, index=frame.index)
    return frame[columns].notna().any(axis=1)


def front(rows: pd.DataFrame, cost: str) -> pd.DataFrame:
    """Rows no other row beats on both ``cost`` (lower) and accuracy (higher), by cost
    (:func:`raymeta.method.pareto.pareto_front`)."""
    return rows.iloc[pareto_front(rows[cost].tolist(), rows["accuracy"].tolist())]


def _label(row, blocks: list[str]) -> str:
    gammas = ", ".join(
        f"{block}: γ={row[GAMMA_PREFIX + block]:g} (h={int(row[WIDTH_PREFIX + block])})" for block in blocks
    )
    return html.escape(gammas)


def _budget(text: str) -> tuple[str, float] | None:
    try:
        kind, limit = str(text).split("<=")
        return kind, float(limit)
    except ValueError:
        return None


def _axes_figure(title: str):
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=1, cols=2, shared_yaxes=True, subplot_titles=("accuracy against MACs", "accuracy against latency")
    )
    figure.update_xaxes(title_text="MACs per image", row=1, col=1)
    figure.update_xaxes(title_text="latency (ms, latency table)", row=1, col=2)
    figure.update_layout(title=title, height=520, template="plotly_white", margin={"t": 70})
    return figure


def _add(
    figure,
    rows: pd.DataFrame,
    name: str,
    colour: str,
    blocks: list[str],
    *,
    mode="markers",
    size=8,
    symbol="circle",
    legend=True,
    dash=None,
) -> None:
    import plotly.graph_objects as go

    if rows.empty:
        return
    text = [_label(row, blocks) if blocks else html.escape(str(row.get("method", ""))) for _, row in rows.iterrows()]
    for column, cost in ((1, "macs"), (2, "latency_ms")):
        shown = rows[rows[cost].notna()] if cost in rows else rows.iloc[0:0]
        if shown.empty:
            continue
        labels = [t for t, ok in zip(text, rows[cost].notna(), strict=True) if ok]
        figure.add_trace(
            go.Scatter(
                x=shown[cost],
                y=shown["accuracy"] * 100,
                name=name,
                legendgroup=name,
                showlegend=legend and column == 1,
                mode=mode,
                marker={"size": size, "color": colour, "symbol": symbol},
                line={"color": colour, **({"dash": dash} if dash else {})},
                text=labels,
                hovertemplate="%{text}<br>%{x:.4g}<br>accuracy %{y:.2f}%<extra>" + html.escape(name) + "</extra>",
            ),
            row=1,
            col=column,
        )


def deploy_section(search: pd.DataFrame, others: pd.DataFrame, figure_html) -> list[str]:
    """HTML parts of the section: per (run, budget) searched, the validation figure and the front table, and the
    test figure when the search has test rows. ``figure_html(figure, div_id)`` renders a figure."""
    parts = [
        "<h2>Deployment search (raymeta deploy)</h2>",
        '<p class="note">Every candidate configuration (a γ per metamorphic block) scored on the validation '
        "split, which alone chooses; the front is the candidates no other beats on both cost and accuracy. "
        "Latency: the run's per-block latency table on the device it was measured on (the chosen network is "
        "measured itself: its row's <code>measured_latency_ms</code>).</p>",
    ]
    blocks_of = sorted(c[len(GAMMA_PREFIX) :] for c in search.columns if c.startswith(GAMMA_PREFIX))
    order = ["run_id", "budget", "split", "macs", *(GAMMA_PREFIX + b for b in blocks_of), "samples", "accuracy"]
    search = search.sort_values(order, kind="stable")  # the same rows in any order give the same page
    groups = search.groupby(["run_id", "budget"], sort=True, dropna=False)
    for index, ((run_id, budget_text), rows) in enumerate(groups):
        blocks = [b for b in blocks_of if rows[GAMMA_PREFIX + b].notna().all()]
        validation = rows[rows["split"] == "validation"]
        parts.append(f"<h3>{html.escape(str(run_id))}: budget {html.escape(str(budget_text))}</h3>")
        figure = _axes_figure(f"Validation accuracy of the searched configurations ({len(validation)} candidates)")
        _add(
            figure,
            validation[validation["search_kind"] == "per_block"],
            "per-block candidates",
            COLOURS["candidate"],
            blocks,
            size=6,
        )
        _add(
            figure,
            validation[validation["search_kind"] == "uniform"].sort_values("macs"),
            "uniform γ",
            COLOURS["uniform"],
            blocks,
            mode="lines+markers",
        )
        for column, cost in ((1, "macs"), (2, "latency_ms")):
            line = front(validation, cost)
            _add_front(figure, line, column, cost, blocks, legend=column == 1)
        _add(
            figure,
            validation[validation["search_status"] == "chosen"],
            "chosen",
            COLOURS["chosen"],
            blocks,
            size=16,
            symbol="star",
        )
        budget = _budget(budget_text)
        if budget:
            kind, limit = budget
            column = {"macs": 1, "latency_ms": 2}.get(kind)
            if column and limit <= 1.25 * validation[kind].max():  # a budget far beyond every candidate: no line
                figure.add_vline(
                    x=limit, line_dash="dot", line_color="#555", row=1, col=column, annotation_text="budget"
                )
        figure.update_yaxes(title_text="validation accuracy (%)", row=1, col=1)
        parts.append(figure_html(figure, f"fig-deploy-{index}"))
        parts.append(front_table(validation, rows[rows["split"] == "test"], blocks))
        test = rows[rows["split"] == "test"]
        if not test.empty:
            parts.append(figure_html(_test_figure(test, others, validation, blocks), f"fig-deploy-test-{index}"))
    return parts


def _add_front(figure, line: pd.DataFrame, column: int, cost: str, blocks: list[str], legend: bool) -> None:
    import plotly.graph_objects as go

    text = [_label(row, blocks) for _, row in line.iterrows()]
    figure.add_trace(
        go.Scatter(
            x=line[cost],
            y=line["accuracy"] * 100,
            name="front (all candidates)",
            legendgroup="front",
            showlegend=legend,
            mode="lines+markers",
            line={"color": COLOURS["front"], "shape": "hv"},
            marker={"color": COLOURS["front"]},
            text=text,
            hovertemplate="%{text}<br>%{x:.4g}<br>accuracy %{y:.2f}%<extra>front</extra>",
        ),
        row=1,
        col=column,
    )


def _test_figure(test: pd.DataFrame, others: pd.DataFrame, validation: pd.DataFrame, blocks: list[str]):
    figure = _axes_figure(
        "Test accuracy (reported only): uniform γ, the per-block configurations of the validation "
        "fronts, and the baselines"
    )
    _add(
        figure,
        test[test["search_kind"] == "uniform"].sort_values("macs"),
        "uniform γ",
        COLOURS["uniform"],
        blocks,
        mode="lines+markers",
    )
    _add(
        figure,
        test[test["search_kind"] == "per_block"],
        "per-block (validation front)",
        COLOURS["front"],
        blocks,
        size=9,
        symbol="diamond",
    )
    _add(figure, test[test["search_status"] == "chosen"], "chosen", COLOURS["chosen"], blocks, size=16, symbol="star")
    uniform = validation[validation["search_kind"] == "uniform"]
    shapes = {
        (macs, params): latency
        for macs, params, latency in zip(uniform["macs"], uniform["params"], uniform["latency_ms"], strict=True)
    }
    baselines = others[
        (others["phase"] == "final") & (others["split"] == "test") & others["method"].str.startswith(BASELINES)
    ]

    def same_shape(row) -> float | None:
        """The latency of this search's uniform network of the baseline's shape: the same MACs and the same
        parameters but for the metamorphic network's α scalars (one per block); None when there is none (a
        baseline of a run with other metamorphic blocks, left off these axes)."""
        for extra in range(len(blocks) + 1):
            if (row["macs"], row["params"] + extra) in shapes:
                return shapes[(row["macs"], row["params"] + extra)]
        return None

    matched = baselines.apply(same_shape, axis=1) if len(baselines) else pd.Series(dtype=float)
    baselines = baselines.assign(latency_ms=matched)[matched.notna()] if len(baselines) else baselines
    for colour, (method, rows) in zip(BASELINE_COLOURS * 4, baselines.groupby("method", sort=True), strict=False):
        rows = rows.drop_duplicates(["run_id", "gamma", "samples"], keep="last").sort_values("macs")
        _add(figure, rows, str(method), colour, [], mode="lines+markers", symbol="square", dash="dash")
    figure.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    return figure


def front_table(validation: pd.DataFrame, test: pd.DataFrame, blocks: list[str]) -> str:
    """The validation front by MACs as an HTML table: per-block γ and widths, cost, validation and test accuracy."""
    line = front(validation, "macs")
    tested = {tuple(row[GAMMA_PREFIX + b] for b in blocks): row["accuracy"] for _, row in test.iterrows()}
    head = "".join(f"<th>{html.escape(b)} γ (h)</th>" for b in blocks)
    lines = [
        "<table><thead><tr><th>kind</th>" + head + "<th>MACs</th><th>params</th><th>latency (ms)</th>"
        "<th>validation acc (%)</th><th>test acc (%)</th><th>status</th></tr></thead><tbody>"
    ]
    for _, row in line.iterrows():
        cells = "".join(f"<td>{row[GAMMA_PREFIX + b]:g} ({int(row[WIDTH_PREFIX + b])})</td>" for b in blocks)
        key = tuple(row[GAMMA_PREFIX + b] for b in blocks)
        test_text = f"{100 * tested[key]:.2f}" if key in tested else "–"
        chosen = ' class="best"' if row["search_status"] == "chosen" else ""
        lines.append(
            f"<tr><td{chosen}>{html.escape(str(row['search_kind']))}</td>{cells}<td>{int(row['macs']):,}</td>"
            f"<td>{int(row['params']):,}</td><td>{row['latency_ms']:.3f}</td>"
            f"<td>{100 * row['accuracy']:.2f}</td><td>{test_text}</td>"
            f"<td>{html.escape(str(row['search_status']))}</td></tr>"
        )
    lines.append(
        '</tbody></table><p class="note">The validation front by MACs (the candidates no cheaper one '
        "matches in validation accuracy); test accuracy where the search was evaluated on test "
        "(<code>--report-test</code>), never used to choose.</p>"
    )
    return "\n".join(lines)
