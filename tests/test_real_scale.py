"""The anatomical scale: the voxel size a phantom-trained model runs real CT at
(deeptree.resample.real_ct_spacing), and its choice on validation CTs (deeptree.real_scale)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from docs_text import doc_page

from deeptree import demo
from deeptree.checkpoints import LoadedModel, load_checkpoint
from deeptree.io import InputError
from deeptree.real_scale import (
    ScaleRow,
    choose_spacing,
    rows_as_dicts,
    rows_from_dicts,
    sweep_spacings,
    validation_cts,
)
from deeptree.resample import anatomical_spacing, real_ct_spacing


def _row(mm, tld, precision=0.5):
    return ScaleRow(mm, tld, 0.1, precision, 0.4, 1, 1.0, 10.0, 1, (tld,))


def test_real_ct_spacing_divides_the_training_spacing_by_the_anatomical_scale():
    meta = {"spacing": [0.8, 0.8, 1.0]}
    assert real_ct_spacing(meta) == (0.8, 0.8, 1.0)  # no scale recorded: as trained
    assert real_ct_spacing({**meta, "anatomical_scale": 0.5}) == pytest.approx((1.6, 1.6, 2.0))
    assert anatomical_spacing(None, {"anatomical_scale": 0.5}) is None
    for bad in (0, -1.0, "x", float("nan")):
        with pytest.raises(
            InputError, match=r"demo\.pt: recorded anatomical_scale .* not a positive"
        ):
            real_ct_spacing({**meta, "anatomical_scale": bad}, "demo.pt")


def test_model_spacing_runs_real_ct_at_the_scaled_spacing_and_still_checks_stage_2():
    from deeptree.pipeline import model_spacing

    meta1 = {"stage": 1, "spacing": [0.8] * 3, "anatomical_scale": 0.25}
    meta2 = {"stage": 2, "spacing": [0.8] * 3}
    assert model_spacing(LoadedModel(None, meta1), LoadedModel(None, meta2)) == (3.2, 3.2, 3.2)
    # stage 2 is compared at the training spacing, where both were trained
    with pytest.raises(InputError, match="stage 1 was trained at"):
        model_spacing(LoadedModel(None, meta1), LoadedModel(None, {**meta2, "spacing": [1.0] * 3}))


def test_choose_spacing_takes_the_highest_tld_then_the_higher_precision():
    rows = [_row(1.6, 0.07, 0.9), _row(2.4, 0.09, 0.7), _row(3.2, 0.04, 0.8)]
    assert choose_spacing(rows).spacing_mm == 2.4
    tied = [_row(1.6, 0.09, 0.9), _row(2.4, 0.09, 0.7)]
    assert choose_spacing(tied).spacing_mm == 1.6
    assert rows_from_dicts(json.loads(json.dumps(rows_as_dicts(rows)))) == rows
    with pytest.raises(InputError, match="no rows"):
        choose_spacing([])


@pytest.fixture(scope="module")
def coarse_validation(tmp_path_factory):
    """One validation CT around the real atm_001 tree at 4 mm (the shipped choice uses 1 mm)."""
    cache = tmp_path_factory.mktemp("scale")
    cts, tree = validation_cts(1, seed=7, cache=cache, spacing_mm=4.0)
    return cache, cts, tree


def test_validation_cts_are_simulated_around_the_real_tree_and_cached(coarse_validation):
    cache, cts, tree = coarse_validation
    ct = cts[0]
    assert ct.array.shape == tree.array.shape and ct.array.dtype == np.int16
    assert np.allclose(ct.affine, tree.affine) and tree.spacing == (4.0, 4.0, 4.0)
    assert set(np.unique(tree.array)) == {0, 1}
    # the tree fills the box up to the margin: about 50 mm (plus a voxel) on every side
    where = np.nonzero(tree.array)
    assert min(w.min() for w in where) in (4, 5, 6)
    # the airway is dark (air inside, partial volume at its edge), the chest around it is not
    inside = ct.array[tree.array > 0]
    assert np.median(inside) < -600 and np.median(ct.array) > np.median(inside)
    again, tree_again = validation_cts(1, seed=7, cache=cache, spacing_mm=4.0)
    assert np.array_equal(again[0].array, ct.array) and np.array_equal(tree_again.array, tree.array)
    with pytest.raises(InputError, match="at least 1"):
        validation_cts(0)


def test_sweep_scores_every_candidate_on_the_validation_cts(coarse_validation):
    from deeptree.stage1.predict import load_stage1_model
    from deeptree.stage2.predict import load_stage2_model

    _, cts, tree = coarse_validation
    path1, path2 = demo.demo_checkpoints()
    stage1, stage2 = load_stage1_model(path1, "cpu"), load_stage2_model(path2, "cpu")
    rows = sweep_spacings(stage1, stage2, cts, tree, [4.0, 6.0])
    assert [r.spacing_mm for r in rows] == [4.0, 6.0]
    for row in rows:
        assert row.cases == 1 and len(row.TLD_cases) == 1 and row.TLD == row.TLD_cases[0]
        assert all(0.0 <= v <= 1.0 for v in (row.TLD, row.BD, row.precision, row.DSC))
        assert 0 <= row.trachea_found <= 1 and row.volume_ml >= 0


def test_record_anatomical_scale_rewrites_only_the_record(tmp_path):
    import torch

    source = demo.demo_checkpoints()[0]
    target = shutil.copy(source, tmp_path / "stage1.pt")
    before = load_checkpoint(target)
    demo.record_anatomical_scale(target, 0.5, {"chosen_mm": 1.6})
    after = load_checkpoint(target)
    assert after["meta"]["anatomical_scale"] == 0.5
    assert after["meta"]["demo"]["scale_validation"] == {"chosen_mm": 1.6}
    assert after["meta"]["demo"]["trained_on"] == before["meta"]["demo"]["trained_on"]
    for key, value in before["model"].items():
        assert torch.equal(after["model"][key], value)
    line = demo.describe(target)
    assert "a CT is resampled to 1.6x1.6x1.6 mm" in line
    with pytest.raises(InputError, match="positive number"):
        demo.record_anatomical_scale(target, 0.0, {})
    assert load_checkpoint(target)["meta"]["anatomical_scale"] == 0.5  # refused: unchanged


def test_the_shipped_weights_run_real_ct_at_the_voxel_size_chosen_on_validation():
    from deeptree.stage1.predict import load_stage1_model
    from deeptree.stage2.predict import load_stage2_model

    path1, path2 = demo.demo_checkpoints()
    s1, s2 = load_stage1_model(path1), load_stage2_model(path2)
    record = s1.meta["demo"]["scale_validation"]
    rows = rows_from_dicts(record["rows"])
    # the recorded choice is the rule applied to the recorded validation rows
    assert choose_spacing(rows).spacing_mm == record["chosen_mm"]
    assert len(rows) >= 3 and all(r.cases >= 3 for r in rows)
    assert s1.meta["anatomical_scale"] == pytest.approx(s1.meta["spacing"][0] / record["chosen_mm"])
    assert s2.meta["anatomical_scale"] == s1.meta["anatomical_scale"]
    assert real_ct_spacing(s1.meta) == pytest.approx((record["chosen_mm"],) * 3)
    card = demo.model_card()
    assert card["scale"] == json.loads(json.dumps(record))  # the card shows what they record
    text = (demo.weights_dir() / demo.CARD_NAME).read_text()
    assert f"a real CT is resampled to {record['chosen_mm']:g} mm" in text


def test_the_readme_says_what_the_card_measured():
    """The page the README's "Segment your own CT" moved to (docs/segment-your-ct.md)."""
    readme = doc_page("segment-your-ct.md")
    card = demo.model_card()
    assert f"{card['scale']['chosen_mm']:g} mm for the demo weights" in readme
    chest = card["real"]["totalseg_chest"]["final"]
    said = (
        f"trachea {'found' if chest['trachea_found'] else 'not found'}, deepest generation "
        f"{chest['generations_reached']}"
    )
    assert said in " ".join(readme.split())


def test_the_files_the_model_card_points_to_exist():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (demo.weights_dir() / demo.CARD_NAME).read_text(encoding="utf-8")
    named = set(re.findall(r"`(benchmarks/[\w./-]+\.(?:md|py))`", text))
    assert "benchmarks/records/demo_variation.md" in named
    assert all((root / name).is_file() for name in named), named


def test_the_demo_weights_script_runs_every_step_in_quick_mode(tmp_path):
    """`benchmarks/demo_weights.py --quick`: cohort, training, export, the scale choice, the
    card and the transfer checks, end to end (about a minute), into a temporary folder (never
    over the shipped weights)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out, work = tmp_path / "weights", tmp_path / "work"
    command = [sys.executable, str(root / "benchmarks" / "demo_weights.py"), "--quick",
               "--out", str(out), "--work", str(work), "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((out / demo.CARD_JSON).read_text())
    scale = card["scale"]
    assert scale["chosen_mm"] in card["settings"]["scale_candidates_mm"]
    chosen = choose_spacing(rows_from_dicts(scale["rows"]))
    assert chosen.spacing_mm == scale["chosen_mm"]
    for name in (demo.STAGE1_NAME, demo.STAGE2_NAME):
        meta = load_checkpoint(out / name)["meta"]
        assert meta["anatomical_scale"] == pytest.approx(
            card["settings"]["spacing_mm"] / scale["chosen_mm"]
        )
    text = (out / demo.CARD_NAME).read_text()
    assert f"a real CT is resampled to {scale['chosen_mm']:g} mm" in text
    # the transfer step: the report kept in the work folder, the checks in the card
    assert card["transfer"] == json.loads((work / "transfer.json").read_text())
    checks = card["transfer_checks"]
    assert [c["check"].split(":")[0] for c in checks] == [
        "totalseg_chest", "cip_ct64 against its label", "CTs simulated around atm_001, outside "
        "the demo draws",
    ]  # fmt: skip
    assert "## Transfer checks (issue 33)" in text and checks[2]["measured"] in text
    assert card["training"]["stage1"]["convergence"]["score"] == "TLD"


def test_model_spacing_option_overrides_the_checkpoint_voxel_size(tmp_path, capsys, monkeypatch):
    """`--model-spacing MM` (predict and segment): the model runs at MM; the output is still on
    the CT's grid; a bad value is refused naming the option."""
    import deeptree.pipeline
    import deeptree.stage1.predict
    from deeptree.cli import main
    from deeptree.io import read_nifti, write_nifti
    from deeptree.resample import to_model_grid

    used = []

    def recording(array, affine, spacing, name):
        used.append(tuple(spacing))
        return to_model_grid(array, affine, spacing, name)

    monkeypatch.setattr(deeptree.pipeline, "to_model_grid", recording)
    monkeypatch.setattr(deeptree.stage1.predict, "to_model_grid", recording)

    ii, jj, _ = np.meshgrid(np.arange(40), np.arange(40), np.arange(30), indexing="ij")
    ct = np.full((40, 40, 30), -850, np.int16)
    ct[(ii - 20) ** 2 + (jj - 20) ** 2 <= 36] = 40
    ct[(ii - 20) ** 2 + (jj - 20) ** 2 <= 16] = -1000
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    path = write_nifti(tmp_path / "ct.nii.gz", ct, affine)
    for command in ("segment", "predict"):
        out = tmp_path / f"{command}.nii.gz"
        argv = [command, str(path), str(out), "--device", "cpu", "--model-spacing", "1.4"]
        assert main(argv) == 0
        said = capsys.readouterr().out
        assert "the model runs at 1.4 mm" in said and "model spacing 1.4x1.4x1.4 mm" in said
        written = read_nifti(out)
        assert written.array.shape == ct.shape and np.allclose(written.affine, affine)
        assert used.pop() == pytest.approx((1.4, 1.4, 1.4))  # where the model really ran
    assert main(["segment", str(path), str(tmp_path / "x.nii.gz"), "--model-spacing", "-1"]) == 2
    assert "--model-spacing" in capsys.readouterr().err
