"""Visible failures (issue 18): Dice per anatomy class, logged by stage-1 validation, and the
flag for a model whose class-1 Dice on validation stays below 0.3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deeptree.config import get_config
from deeptree.io import InputError
from deeptree.metrics import class_dice
from deeptree.phantom import generate_case
from deeptree.stage1.data import prepare_stage1_case
from deeptree.stage1.task import CLASS1_DICE_FLOOR, class1_dice_failure, stage1_task


def three_class_labels() -> np.ndarray:
    """A line of 30 voxels along k: 10 of class 1, 10 of class 2, 10 of class 3."""
    labels = np.zeros((5, 5, 40), dtype=np.uint8)
    labels[2, 2, 5:15] = 1
    labels[2, 2, 15:25] = 2
    labels[2, 2, 25:35] = 3
    return labels


def test_class_dice_by_hand():
    labels = three_class_labels()
    perfect = class_dice(labels > 0, labels)
    assert perfect == {1: 1.0, 2: 1.0, 3: 1.0}
    # half of class 1 found, class 2 whole with 2 extra voxels beside it, class 3 missed
    pred = np.zeros(labels.shape, dtype=bool)
    pred[2, 2, 5:10] = True
    pred[2, 2, 15:25] = True
    pred[1, 2, 20] = pred[3, 2, 20] = True  # nearest GT voxels are class 2
    d = class_dice(pred, labels)
    assert d[1] == pytest.approx(2 * 5 / (5 + 10))
    assert d[2] == pytest.approx(2 * 10 / (12 + 10))
    assert d[3] == 0.0
    # a class the GT lacks is None; an empty prediction scores 0
    two = np.where(labels == 3, 0, labels).astype(np.uint8)
    assert class_dice(np.zeros_like(pred), two) == {1: 0.0, 2: 0.0, 3: None}


def test_class_dice_nearest_class_uses_the_spacing():
    """A predicted voxel between a class-1 and a class-2 voxel joins the nearer in mm."""
    labels = np.zeros((1, 3, 3), dtype=np.uint8)
    labels[0, 0, 1] = 1  # 1 voxel away along j
    labels[0, 1, 0] = 2  # 1 voxel away along k
    pred = labels > 0
    pred[0, 1, 1] = True
    assert class_dice(pred, labels, (1.0, 1.0, 3.0))[1] < 1.0  # j is the nearer: class 1
    assert class_dice(pred, labels, (1.0, 1.0, 3.0))[2] == 1.0
    assert class_dice(pred, labels, (1.0, 3.0, 1.0))[1] == 1.0


def test_class_dice_bad_inputs():
    labels = three_class_labels()
    with pytest.raises(InputError, match="does not match"):
        class_dice(labels[:, :, :10] > 0, labels)
    with pytest.raises(InputError, match="integer classes"):
        class_dice(labels > 0, labels * 2)
    with pytest.raises(InputError, match="no airway voxel"):
        class_dice(labels > 0, np.zeros_like(labels))


def test_stage1_validation_logs_dice_per_class():
    case = generate_case("smoke", seed=0)
    prepared = prepare_stage1_case(case.ct, case.airway, case.spacing, case.affine, case_id="s0")
    config = get_config("smoke")
    task = stage1_task(
        [prepared], [prepared], "amc+gul", config.stage1_net, config.stage1_train, device="cpu"
    )
    task.model.eval()
    with torch.no_grad():
        scores = task.validate(task.model)
    present = set(np.unique(prepared.label)) - {0}
    for c in (1, 2, 3):
        if c in present:
            assert 0.0 <= scores[f"dice_{c}"] <= 1.0
        else:
            assert scores[f"dice_{c}"] is None  # the smoke phantoms have no class 3
    assert {"BD", "TLD", "precision", "DSC"} <= set(scores)


def validation_log(dice_1_values) -> list[dict]:
    entries = []
    for n, value in enumerate(dice_1_values, 1):
        entries.append({"iteration": 100 * n, "loss": 1.0})
        entries.append({"iteration": 100 * n, "val": {"DSC": 0.5, "dice_1": value}})
    return entries


def test_class1_dice_failure_flags_a_model_that_stays_below(tmp_path):
    assert CLASS1_DICE_FLOOR == 0.3
    assert class1_dice_failure(validation_log([0.1, 0.2, 0.35])) is None
    flagged = class1_dice_failure(validation_log([0.05, 0.2, 0.1]))
    assert "0.100 at iteration 300 is below 0.3" in flagged
    assert "best 0.200 at iteration 200" in flagged
    # a model that collapses at the end is flagged too (last.pt is the last model)
    assert class1_dice_failure(validation_log([0.6, 0.2])) is not None
    assert class1_dice_failure(validation_log([0.25]), threshold=0.2) is None
    # from a run folder or its log file
    run = tmp_path / "run"
    run.mkdir()
    log = run / "log.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in validation_log([0.1])))
    assert str(log) in class1_dice_failure(run)
    assert class1_dice_failure(log) == class1_dice_failure(run)


def test_class1_dice_failure_needs_a_validation(tmp_path):
    with pytest.raises(InputError, match="no validation with a class-1 Dice"):
        class1_dice_failure([{"iteration": 1, "loss": 1.0}])
    with pytest.raises(InputError, match="no validation"):
        class1_dice_failure(tmp_path)  # no log at all
    with pytest.raises(InputError, match="no validation"):
        class1_dice_failure(validation_log([None]))
