"""Training curves of a run's models (issue 30): logs -> rows, the figure, the run's files."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest

from deeptree.config import reproduce_settings
from deeptree.evaluation.curves import (
    CURVE_COLUMNS,
    PANELS,
    curve_rows,
    model_key,
    plot_training_curves,
    read_curves_csv,
)
from deeptree.evaluation.outputs import ReproduceResult, write_outputs
from deeptree.evaluation.paper import Split
from deeptree.io import InputError


def _log(iterations: int, val_every: int | None = None, scale: float = 1.0) -> list[dict]:
    """A hand-built log: loss = scale * iteration, airway_p = iteration / 1000, a validation
    every ``val_every`` iterations with TLD = iteration / 100 and the class Dice."""
    entries = []
    for it in range(1, iterations + 1):
        entries.append({"iteration": it, "loss": scale * it, "dice": 0.5, "airway_p": it / 1000,
                        "lr": 0.01, "seconds": 0.1 * it})  # fmt: skip
        if val_every and it % val_every == 0:
            entries.append({"iteration": it, "val": {
                "TLD": it / 100, "BD": 0.5, "precision": 0.9, "DSC": 0.8,
                "dice_1": 0.7, "dice_2": 0.4, "dice_3": 0.1}})  # fmt: skip
    return entries


def _write(path, entries, tail: str = "") -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + tail)
    return str(path)


def test_model_key_reads_seed_and_method():
    assert model_key("seed3/amc+gul") == (3, "amc+gul")
    assert model_key("stage 1 (gul)") == (None, "stage 1 (gul)")


def test_training_steps_are_averaged_per_window_and_validations_kept():
    rows = curve_rows({"seed1/amc+gul": _log(40, val_every=20)}, windows=4)
    assert all(list(r) == list(CURVE_COLUMNS) for r in rows)
    train = [r for r in rows if r["kind"] == "train"]
    assert [(r["first_iteration"], r["iteration"]) for r in train] == [
        (1, 10), (11, 20), (21, 30), (31, 40)
    ]  # fmt: skip
    assert [r["loss"] for r in train] == [5.5, 15.5, 25.5, 35.5]
    assert [r["airway_p"] for r in train] == pytest.approx([0.0055, 0.0155, 0.0255, 0.0355])
    assert {(r["seed"], r["method"]) for r in rows} == {(1, "amc+gul")}
    assert all(r[k] is None for r in train for k in ("TLD", "dice_1"))
    val = [r for r in rows if r["kind"] == "val"]
    assert [(r["iteration"], r["TLD"], r["dice_1"], r["dice_3"]) for r in val] == [
        (20, 0.2, 0.7, 0.1), (40, 0.4, 0.7, 0.1)
    ]  # fmt: skip
    assert all(r["loss"] is None and r["airway_p"] is None for r in val)


def test_twenty_windows_by_default_and_one_step_each_when_shorter():
    rows = curve_rows({"seed0/plain": _log(2000)})
    assert len(rows) == 20 and rows[0]["iteration"] == 100 and rows[-1]["iteration"] == 2000
    assert rows[0]["loss"] == pytest.approx(50.5)
    short = curve_rows({"seed0/plain": _log(3)})
    assert [(r["first_iteration"], r["iteration"], r["loss"]) for r in short] == [
        (1, 1, 1.0), (2, 2, 2.0), (3, 3, 3.0)
    ]  # fmt: skip
    with pytest.raises(InputError, match="windows"):
        curve_rows({"seed0/plain": _log(3)}, windows=0)


def test_model_without_validation_and_log_without_steps():
    logs = {
        "seed0/plain": _log(10),  # smoke: no validation
        "seed0/gul": [e for e in _log(10, val_every=5) if "val" in e],  # validation lines only
        "seed0/amc": [{"iteration": 1, "loss": 1.0}],  # a log from before airway_p
    }
    rows = curve_rows(logs, windows=5)
    assert {r["kind"] for r in rows if r["method"] == "plain"} == {"train"}
    assert [(r["kind"], r["iteration"]) for r in rows if r["method"] == "gul"] == [
        ("val", 5), ("val", 10)
    ]  # fmt: skip
    assert [(r["loss"], r["airway_p"]) for r in rows if r["method"] == "amc"] == [(1.0, None)]
    # rows keep the order of the logs, training before validation
    assert list(dict.fromkeys(r["method"] for r in rows)) == ["plain", "gul", "amc"]


def test_torn_empty_missing_and_damaged_logs(tmp_path):
    torn = _write(tmp_path / "torn.jsonl", _log(4), tail='{"iteration": 5, "lo')
    empty = _write(tmp_path / "empty.jsonl", [])
    missing = str(tmp_path / "nowhere" / "log.jsonl")
    with pytest.warns(UserWarning, match="cut short"):
        rows = curve_rows({"seed0/plain": torn, "seed0/amc": empty, "seed0/gul": missing})
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]  # the torn line dropped
    assert {r["method"] for r in rows} == {"plain"}
    damaged = _write(tmp_path / "damaged.jsonl", [], tail="not json\n" + json.dumps(_log(1)[0]))
    with pytest.raises(InputError, match="damaged.jsonl: line 1 is not JSON"):
        curve_rows({"seed0/amc": damaged})
    with pytest.warns(UserWarning, match="damaged.jsonl: line 1.*seed0/amc is left out"):
        rows = curve_rows({"seed0/amc": damaged, "seed0/plain": _log(2)}, skip_damaged=True)
    assert {r["method"] for r in rows} == {"plain"}


def _lines(ax):
    return [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()]


def test_plot_draws_one_line_per_model_in_every_panel():
    logs = {f"seed{s}/{m}": _log(30, val_every=10) for s in (0, 1) for m in ("plain", "amc+gul")}
    logs["seed0/cldice"] = _log(30, val_every=10)
    fig = plot_training_curves(curve_rows(logs, windows=6), title="t", offscreen=True)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [title for _, title in PANELS]
    for ax in panels:
        lines = _lines(ax)
        assert len(lines) == 5, ax.get_title()
        assert len(set(lines)) == 5  # every model told apart
        colors = {c for c, _ in lines}
        assert len(colors) == 3  # one colour per variant, whatever the seed
        assert {s for _, s in lines} == {"-", "--"}  # one style per seed
    assert panels[1].get_yscale() == "log"  # airway_p: a collapse goes decades down
    # the loss panel draws the window means at their middle iteration
    x, y = panels[0].get_lines()[0].get_data()
    assert list(x) == [3.0, 8.0, 13.0, 18.0, 23.0, 28.0] and y[0] == pytest.approx(3.0)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["nnUNet*", "nnUNet* + AMC + GUL", "clDice", "seed 0", "seed 1"]


def test_plot_leaves_a_model_out_of_a_panel_it_has_no_figures_for():
    logs = {"seed0/plain": _log(10), "seed0/amc": _log(10, val_every=5)}
    fig = plot_training_curves(curve_rows(logs, windows=5), offscreen=True)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert len(panels[PANELS[0][1]].get_lines()) == 2
    assert len(panels[PANELS[2][1]].get_lines()) == 1  # plain was never validated
    empty = plot_training_curves([], offscreen=True)
    assert all(not ax.get_lines() for ax in empty.axes)


def _hand_result(logs: dict) -> ReproduceResult:
    """The least a ``write_outputs`` needs: no tables, one tiny figure case."""
    gt = np.zeros((6, 6, 6), bool)
    gt[2:4, 2:4, 1:5] = True
    return ReproduceResult(
        settings=reproduce_settings("smoke"), data_label="synthetic cohort (hand-made)",
        split=Split([], [], []), rows=[], generation_rows=[], summary={}, table1=[], table2=[],
        effects=[], curves=[],
        figure_case={"id": "X", "ct": gt * 1.0, "gt": gt, "spacing": (1.0, 1.0, 1.0),
                     "masks": {"plain": gt}},
        checkpoints={}, trained={}, seconds={}, logs=logs,
    )  # fmt: skip


def test_write_outputs_writes_the_training_curves(tmp_path):
    logs = {
        "seed0/plain": _write(tmp_path / "plain.jsonl", _log(40, val_every=20)),
        "seed1/amc+gul": _write(tmp_path / "amc_gul.jsonl", _log(40, val_every=20, scale=2)),
    }
    out = tmp_path / "run"
    result = _hand_result(logs)
    paths = write_outputs(result, out)
    assert paths["training_curves_csv"] == out / "tables" / "training_curves.csv"
    assert result.paths["training_curves_png"] == out / "figures" / "training_curves.png"
    assert result.paths["training_curves_png"].read_bytes()[:4] == b"\x89PNG"
    text = paths["training_curves_csv"].read_text()
    assert str(tmp_path) not in text  # models by name, no path of the machine
    with open(paths["training_curves_csv"], newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == list(CURVE_COLUMNS)
    assert len(written) == 2 * (20 + 2)  # 20 windows and 2 validations per model
    # read back, the table equals the rows drawn
    assert read_curves_csv(paths["training_curves_csv"]) == curve_rows(logs)
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temporary file


def test_write_outputs_goes_on_past_a_damaged_log(tmp_path):
    damaged = _write(tmp_path / "log.jsonl", [], tail="{oops\n" + json.dumps(_log(1)[0]) + "\n")
    logs = {"seed0/plain": damaged, "seed0/amc": _log(5)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = write_outputs(_hand_result(logs), tmp_path / "run")
    assert any("seed0/plain is left out" in str(w.message) for w in caught)
    rows = read_curves_csv(paths["training_curves_csv"])
    assert {r["method"] for r in rows} == {"amc"} and paths["results_json"].is_file()


def test_read_curves_csv_names_a_file_of_another_table(tmp_path):
    other = tmp_path / "per_case.csv"
    other.write_text("case,method\nA,plain\n")
    with pytest.raises(InputError, match="per_case.csv: not a training-curves table"):
        read_curves_csv(other)


def test_five_seeds_are_drawn_with_five_dash_patterns():
    """The recipe check draws five training seeds: each its own dash pattern (four styles
    made seed 4 look like seed 0; custom dash patterns must reach matplotlib as a linestyle)."""
    logs = {f"seed{s}/plain": _log(30, val_every=10) for s in range(5)}
    fig = plot_training_curves(curve_rows(logs, windows=6), title="t", offscreen=True)
    panel = [ax for ax in fig.axes if ax.get_title()][0]
    patterns = {repr(line._dash_pattern) for line in panel.get_lines()}
    assert len(panel.get_lines()) == 5 and len(patterns) == 5


# --------------------------------------------------------------------------------------------
# convergence: the flattening rule (issue 32)
# --------------------------------------------------------------------------------------------
def test_training_seconds_add_up_the_calls_of_a_resumed_run():
    from deeptree.evaluation.convergence import training_seconds

    calls = [{"iteration": i, "loss": 1.0, "seconds": s} for i, s in enumerate((1, 2, 3, 1.5, 4), 1)]
    assert training_seconds(calls + [{"iteration": 5, "val": {"TLD": 0.1}}]) == 3 + 4
    assert training_seconds([]) == 0.0


def test_a_shipped_log_keeps_validations_and_a_curve_of_steps_and_the_same_seconds():
    from deeptree.evaluation.convergence import training_seconds
    from deeptree.evaluation.shipped import thinned_log

    # 100 steps in two calls (a resume after step 61, restarting at its checkpoint, 41)
    first = [{"iteration": i, "loss": 1.0 / i, "seconds": 0.5 * i} for i in range(1, 62)]
    second = [{"iteration": i, "loss": 1.0 / i, "seconds": 0.5 * (i - 40)} for i in range(41, 81)]
    vals = [{"iteration": i, "val": {"TLD": i / 100}} for i in (20, 40, 60, 80)]
    entries = first[:20] + vals[:1] + first[20:40] + vals[1:2] + first[40:] + second[:20]
    entries += vals[2:3] + second[20:] + vals[3:]  # the resumed call's check at 60, then 80
    kept = thinned_log(entries, max_steps=10)
    steps = [e for e in kept if "loss" in e]
    assert [e for e in kept if "val" in e] == vals
    assert steps[0] is entries[0] and steps[-1] is second[-1]
    assert first[-1] in steps and second[0] in steps  # the two sides of the resume
    assert 10 <= len(steps) <= 10 + 2 + 1
    assert all(e in entries for e in kept) and kept == sorted(kept, key=entries.index)
    assert training_seconds(kept) == training_seconds(entries) == 30.5 + 20.0
    assert thinned_log(entries, max_steps=101) == entries  # short logs are kept whole


@pytest.mark.parametrize(
    "scores, gain, flat",
    [
        ((0.5, 0.6, 0.8, 0.805), 0.5, True),  # half a point in the last quarter: flat
        ((0.5, 0.8, 0.7, 0.79), -1.0, True),  # the best before, not the check at 75%
        ((0.5, 0.6, 0.7, 0.75), 5.0, False),  # still rising
        ((0.5, 0.6, 0.7, 0.71), 1.0, False),  # exactly one point is not less than one
    ],
)
def test_last_part_gain_hand_curves(scores, gain, flat):
    from deeptree.evaluation.convergence import last_part_gain

    checks = list(zip((250, 500, 750, 1000), scores, strict=True))
    result = last_part_gain(checks, 1000)
    assert result["gain"] == pytest.approx(gain) and result["flat"] is flat
    assert result["end"] == pytest.approx(100 * scores[-1])
    # no verdict for a curve whose last check is not at the end, or with no early check
    assert last_part_gain(checks[:-1], 1000)["flat"] is None
    assert last_part_gain(checks[-1:], 1000)["flat"] is None
    with pytest.raises(InputError, match="last_part"):
        last_part_gain(checks, 1000, last_part=1.0)


def test_convergence_rows_table_and_figure(tmp_path):
    from deeptree.evaluation.convergence import convergence_rows, convergence_text, plot_convergence

    rising = _write(tmp_path / "rising.jsonl", _log(40, val_every=10))  # TLD 0.1 .. 0.4
    flat = _log(40, val_every=10)
    for e in flat:
        if "val" in e:
            e["val"]["TLD"] = 0.5
    silent = [dict(e, val={"gap_dice": 0.0}) if "val" in e else e for e in _log(40, 10)]
    logs = {
        "seed0/plain": rising,
        "seed0/amc": _write(tmp_path / "flat.jsonl", flat),
        "seed0/stage2": _write(tmp_path / "silent.jsonl", silent),
        "seed0/gul": _write(tmp_path / "short.jsonl", _log(5)),  # not validated
        "seed1/plain": tmp_path / "missing.jsonl",  # no log: left out
    }
    rows = convergence_rows(logs, threads={"seed0/plain": 2})
    by = {r["model"]: r for r in rows}
    assert list(by) == ["seed0/plain", "seed0/amc", "seed0/stage2", "seed0/gul"]
    assert (by["seed0/plain"]["gain"], by["seed0/plain"]["flat"]) == (10.0, "no")
    assert (by["seed0/amc"]["gain"], by["seed0/amc"]["flat"]) == (0.0, "yes")
    assert (by["seed0/stage2"]["score"], by["seed0/stage2"]["flat"]) == ("gap_dice", "never learned")
    assert by["seed0/gul"]["flat"] == "not validated" and by["seed0/gul"]["checks"] == 0
    # 40 steps of 0.1 s: wall hours 4 s; CPU hours x 2 threads
    assert by["seed0/plain"]["wall hours"] == round(4.0 / 3600, 2)
    text = convergence_text(rows)
    assert "**1 of 3 validated models meet the flattening rule**" in text
    assert "seed0/plain (no)" in text and "seed0/stage2 (never learned)" in text
    fig = plot_convergence(rows, logs, title="t")
    assert len([a for a in fig.axes if a.has_data()]) == 3
    # a model still training: judged against its schedule, not the iterations done so far
    ongoing = convergence_rows({"seed0/plain": rising}, schedules={"seed0/plain": 80})
    assert ongoing[0]["flat"] == "unfinished" and ongoing[0]["iterations"] == 40
    assert "1 models still training" in convergence_text(ongoing)
    # its panel shades no "last quarter": it has not reached it; a finished model's is shaded
    shaded = [len(ax.patches) for ax in plot_convergence(ongoing, {"seed0/plain": rising}).axes]
    assert shaded == [0]
    assert [len(ax.patches) for ax in plot_convergence(rows[:1], logs).axes] == [1]
