"""Chapter 07's figures (issue 31): the forest plot of the component effects, the effects table
read back from a run's CSV, the folded tables, and the per-generation curves' legibility."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from deeptree.book import pages
from deeptree.config import reproduce_settings
from deeptree.evaluation.forest import (
    MISSING_NOTE,
    PAPER_LABEL,
    effect_label,
    plot_component_effects,
    read_effects_csv,
)
from deeptree.evaluation.outputs import (
    SMOKE_NO_VERDICT,
    ReproduceResult,
    folded,
    markdown_table,
    plot_generation_curves,
    tables_markdown,
    write_csv,
)
from deeptree.evaluation.paper import Split
from deeptree.io import InputError

REPO = Path(__file__).resolve().parents[1]
CPU_EFFECTS = REPO / "results" / "20261202-cpu-synthetic" / "component_effects.csv"


def _effect(component, without, with_, d, low, high, paper):
    """One effect row with the same numbers for every metric (points)."""
    row = {"component": component, "without": without, "with": with_, "seeds": 3, "failed": 0,
           "cases": 10}  # fmt: skip
    for m in ("BD", "TLD", "precision"):
        row.update({f"d{m}": d, f"d{m} low": low, f"d{m} high": high, f"paper d{m}": paper})
    return row


def _effects():
    return [
        _effect("AMC", "plain", "amc", -17.0, -27.0, -7.5, 2.9),  # resolved (hurts)
        _effect("GUL", "plain", "gul", 2.5, -1.0, 6.0, 5.0),  # spans zero: not resolved
        # resolved, not in the paper
        _effect("stage-2 option negatives", "amc+gul+stage2", "amc+gul+stage2+negatives", 4, 1, 7, None),
        _effect("stage 2", "gul", "gul+stage2", math.nan, math.nan, math.nan, 0.8),  # failed
    ]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _ours(ax):
    """(x, y, filled) of each error bar's point in one panel."""
    out = []
    for container in ax.containers:
        line = container.lines[0]
        x, y = line.get_xdata()[0], line.get_ydata()[0]
        out.append((float(x), float(y), line.get_markerfacecolor() != "white"))
    return out


def _paper(ax):
    lines = [line for line in ax.lines if line.get_label() == PAPER_LABEL]
    return lines[0] if lines else None


def test_forest_plot_draws_one_error_bar_per_measured_effect_and_the_paper_beside():
    fig = plot_component_effects(_effects())
    assert len(fig.axes) == 3
    for ax in fig.axes:
        ours = _ours(ax)
        assert [(x, y) for x, y, _ in ours] == [(-17.0, 0.0), (2.5, 1.0), (4.0, 2.0)]
        # the interval of the first row: from -27 to -7.5
        segments = ax.containers[0].lines[2][0].get_segments()
        assert np.allclose(segments[0][:, 0], [-27.0, -7.5])
        paper = _paper(ax)
        assert list(paper.get_xdata()) == [2.9, 5.0, 0.8], "None skipped, the paper's values"
        assert np.allclose(paper.get_ydata(), [0.28, 1.28, 3.28]), "beside rows 0, 1 and 3"
        zero = [line for line in ax.lines if list(line.get_xdata()) == [0, 0]]
        assert zero, "a vertical line at 0"
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "AMC (plain -> amc)"
    assert labels[2] == "stage-2 option negatives (amc+gul+stage2 -> +negatives)"


def test_forest_plot_marks_an_interval_spanning_zero_as_not_resolved():
    ax = plot_component_effects(_effects()).axes[0]
    filled = [f for _, _, f in _ours(ax)]
    assert filled == [True, False, True]
    # a smoke run prints no verdict: every row alike
    smoke = plot_component_effects(_effects(), verdicts=False, title="untrained").axes[0]
    assert [f for _, _, f in _ours(smoke)] == [True, True, True]
    assert "not resolved" not in " ".join(t.get_text() for t in smoke.figure.legends[0].texts)


def test_forest_plot_draws_a_failed_effect_as_missing_not_zero():
    ax = plot_component_effects(_effects(), metrics=("dTLD",)).axes[0]
    assert all(y != 3.0 for _, y, _ in _ours(ax)), "no point on the failed row"
    notes = [t for t in ax.texts if t.get_text() == MISSING_NOTE]
    assert len(notes) == 1 and notes[0].get_position()[1] == 3.0


def test_forest_plot_keeps_its_legend_off_the_panels():
    fig = plot_component_effects(_effects())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert PAPER_LABEL in [t.get_text() for t in fig.legends[0].texts]
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer))


def test_forest_plot_rejects_a_metric_the_effects_lack():
    with pytest.raises(InputError, match="dDSC"):
        plot_component_effects(_effects(), metrics=("dTLD", "dDSC"))
    with pytest.raises(InputError, match="empty"):
        plot_component_effects([])


def test_effect_label_shortens_only_long_extensions():
    assert effect_label({"component": "stage 2", "without": "gul", "with": "gul+stage2"}) == (
        "stage 2 (gul -> gul+stage2)"
    )


def test_read_effects_csv_round_trips_numbers_and_missing_paper_values(tmp_path):
    path = write_csv(tmp_path / "component_effects.csv", _effects())
    rows = read_effects_csv(path)
    assert rows[0]["dTLD low"] == -27.0 and rows[0]["seeds"] == 3
    assert rows[2]["paper dTLD"] is None, "not in the paper"
    assert math.isnan(rows[3]["dBD"]) and rows[3]["paper dBD"] == 0.8


def test_read_effects_csv_names_the_file_and_the_problem(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("method,TLD\nplain,0.5\n")
    with pytest.raises(InputError, match="other.csv.*no column component"):
        read_effects_csv(other)
    bad = tmp_path / "bad.csv"
    bad.write_text("component,without,with,dTLD\nAMC,plain,amc,lots\n")
    with pytest.raises(InputError, match="bad.csv, line 2"):
        read_effects_csv(bad)


def test_forest_plot_of_the_committed_cpu_run():
    effects = read_effects_csv(CPU_EFFECTS)
    fig = plot_component_effects(effects, title="cpu run")
    tld = fig.axes[0]
    assert len(tld.containers) == len(effects)
    assert [x for x, _, _ in _ours(tld)] == [e["dTLD"] for e in effects]
    papers = [e["paper dTLD"] for e in effects if e["paper dTLD"] is not None]
    assert list(_paper(tld).get_xdata()) == papers and len(papers) == 8
    # the filled dots are exactly the rows whose TLD verdict the run printed as resolved
    resolved = [e["TLD verdict"] in ("improves", "hurts") for e in effects]
    assert [f for _, _, f in _ours(tld)] == resolved


def test_folded_tables_survive_the_book_page(tmp_path):
    import markdown  # of the book's MkDocs (the `book` extra), as test_book's pages

    table = markdown_table([{"method": "plain", "TLD": "50.0"}])
    text = folded("The full ablation table", table)
    cell = {"cell_type": "code", "metadata": {}, "source": "display(...)", "execution_count": 1,
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"text/markdown": text, "text/plain": "<Markdown>"}}]}  # fmt: skip
    notebook = tmp_path / "07_x.ipynb"
    notebook.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                    "nbformat_minor": 5}))  # fmt: skip
    page = pages.chapter_markdown(notebook, tmp_path / "docs" / "07_x", "HEADER")
    html = markdown.markdown(page, extensions=["tables", "md_in_html", "attr_list"])
    details = html[html.index("<details>") : html.index("</details>")]
    assert "<summary>The full ablation table</summary>" in details
    assert "<table>" in details and "<td>plain</td>" in details, "the table rendered inside"


def test_generation_curves_have_distinct_colours_and_a_legend_outside():
    methods = ["region-growing", "plain", "cldice", "gul", "amc", "amc+gul", "amc+gul+stage2"]
    curves = [{"method": m, "generation": g, "TLD": 0.0, "BD": 0.0} for m in methods
              for g in range(4)]  # fmt: skip
    fig = plot_generation_curves(curves, methods)
    for ax in fig.axes:
        colours = [to_hex(line.get_color()) for line in ax.lines]
        assert len(colours) == 7 and len(set(colours)) == 7
        markers = [line.get_marker() for line in ax.lines]
        assert len(set(markers)) == 7, "lines on top of each other stay told apart"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[1].get_legend()
    assert legend is not None and len(legend.texts) == 7
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    assert box.x1 <= fig.bbox.x1 + 1, "inside the figure"


def _hand_built_result(profile):
    """A reproduction's result with one effect (AMC hurts on every metric) and no tables."""
    effect = _effect("AMC", "plain", "amc", -17.0, -27.0, -7.5, 2.9)
    effect.update({f"{m} verdict": "hurts" for m in ("BD", "TLD", "precision")})
    return ReproduceResult(
        settings=reproduce_settings(profile), data_label="synthetic cohort", split=Split([], [], []),
        rows=[], generation_rows=[], summary={}, table1=[], table2=[], effects=[effect], curves=[],
        figure_case={}, checkpoints={}, trained={}, seconds={},
    )  # fmt: skip


def test_a_smoke_run_prints_no_verdict_in_its_tables_or_results():
    provenance = {"date": "today", "commit": "abc", "machine": "here"}
    for profile, verdicts in (("smoke", False), ("cpu", True)):
        result = _hand_built_result(profile)
        text = tables_markdown(result, provenance)
        assert ("hurts" in text) is verdicts, profile
        assert (SMOKE_NO_VERDICT in text) is not verdicts, profile
        amc = result.results()["AMC plain->amc"]
        assert amc["TLD"].startswith("-17.0 [-27.0, -7.5]")
        assert ("hurts" in amc["TLD"]) is verdicts, profile
