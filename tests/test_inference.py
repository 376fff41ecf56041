"""Tests of deeptree.stage1.predict: shapes, affine, padding, Gaussian blending, checkpoint errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeptree.checkpoints import save_checkpoint
from deeptree.config import NetworkConfig, TrainConfig
from deeptree.io import InputError, read_nifti, write_nifti
from deeptree.networks import stage1_network
from deeptree.stage1.predict import body_mask, load_stage1_model, predict_file, predict_stage1

NET = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))


def tiny_model(variant="amc+gul"):
    torch.manual_seed(0)
    return stage1_network(NET, variant)


def test_shapes_probabilities_and_mask():
    ct = np.random.default_rng(0).integers(-1000, 200, (20, 30, 17)).astype(np.int16)
    pred = predict_stage1(tiny_model(), ct, (16, 16, 16), device="cpu")
    assert pred.probabilities.shape == (4, 20, 30, 17) and pred.probabilities.dtype == np.float32
    np.testing.assert_allclose(pred.probabilities.sum(0), 1.0, atol=1e-5)
    assert pred.mask.shape == ct.shape and pred.mask.dtype == np.uint8
    body = body_mask(ct)
    # nnU-Net's output rule: the most probable class is not background
    airway = pred.probabilities.argmax(axis=0) != 0
    np.testing.assert_array_equal(pred.mask, (airway & body).astype(np.uint8))
    raw = predict_stage1(tiny_model(), ct, (16, 16, 16), device="cpu", restrict_to_body=False)
    np.testing.assert_array_equal(raw.mask, airway.astype(np.uint8))
    assert pred.classes.shape == ct.shape


def test_ct_smaller_than_patch_is_padded_and_window_matches_direct_forward():
    ct = np.random.default_rng(1).integers(-1000, 200, (16, 16, 16)).astype(np.int16)
    model = tiny_model("plain")
    pred = predict_stage1(model, ct, (16, 16, 16), device="cpu")
    from deeptree.stage1.data import normalize_ct

    with torch.no_grad():
        direct = torch.softmax(model.eval()(torch.from_numpy(normalize_ct(ct))[None, None]), 1)[0]
    np.testing.assert_allclose(pred.probabilities, direct.numpy(), atol=1e-5)
    small = predict_stage1(model, ct[:5, :9, :3], (16, 16, 16), device="cpu")
    assert small.mask.shape == (5, 9, 3) and small.probabilities.shape == (2, 5, 9, 3)


def test_bad_inputs():
    with pytest.raises(InputError, match="3D"):
        predict_stage1(tiny_model(), np.zeros((4, 4)), (16, 16, 16), device="cpu")
    with pytest.raises(InputError, match="NaN"):
        predict_stage1(tiny_model(), np.full((4, 4, 4), np.nan), (16, 16, 16), device="cpu")


def test_predict_file_keeps_shape_and_affine(tmp_path, cip_ct64_dir):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    meta = {
        "stage": 1,
        "variant": "amc+gul",
        "filters": list(NET.filters),
        "patch_size": [32, 32, 32],
        "overlap": 0.0,
    }
    ckpt = save_checkpoint(tmp_path / "last.pt", model, optimizer, 0, TrainConfig(), meta)
    out = predict_file(
        ckpt,
        cip_ct64_dir / "ct.nii.gz",
        tmp_path / "out" / "mask.nii.gz",
        device="cpu",
        classes_path=tmp_path / "out" / "classes.nii.gz",
    )
    ct, mask = read_nifti(cip_ct64_dir / "ct.nii.gz"), read_nifti(out)
    assert mask.array.shape == ct.array.shape
    np.testing.assert_array_equal(mask.affine, ct.affine)
    assert set(np.unique(mask.array)) <= {0, 1}
    assert read_nifti(tmp_path / "out" / "classes.nii.gz").array.max() <= 3
    loaded, loaded_meta = load_stage1_model(ckpt)
    assert loaded_meta["variant"] == "amc+gul" and not loaded.training


def test_unreadable_or_wrong_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_stage1_model(bad)
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stage2 = save_checkpoint(tmp_path / "s2.pt", model, opt, 0, TrainConfig(), {"stage": 2})
    with pytest.raises(InputError, match="not a stage-1 checkpoint"):
        load_stage1_model(stage2)
    wrong = save_checkpoint(
        tmp_path / "w.pt",
        model,
        opt,
        0,
        TrainConfig(),
        {"stage": 1, "variant": "plain", "filters": [2, 4, 8, 16], "patch_size": [16, 16, 16]},
    )
    with pytest.raises(InputError, match="do not fit"):
        load_stage1_model(wrong)
    ct = tmp_path / "ct.nii.gz"
    write_nifti(ct, np.zeros((8, 8, 8), np.int16), np.eye(4))
    with pytest.raises(InputError, match="not found"):
        predict_file(tmp_path / "missing.pt", ct, tmp_path / "m.nii.gz", device="cpu")


def test_class_scores_hand_computed():
    from deeptree.evaluation.compare import class_scores, mean_by_method

    label = np.zeros((4, 4, 4), np.uint8)
    label[0, 0, :2] = 1  # 2 voxels of class 1
    label[1, 1, :4] = 2  # 4 voxels of class 2
    pred_classes = np.zeros_like(label)
    pred_classes[0, 0, :2] = 1
    pred_classes[1, 1, :2] = 1  # half of class 2 predicted, as class 1
    scores = class_scores(pred_classes, pred_classes > 0, label)
    assert scores["recall_1"] == 1.0 and scores["recall_2"] == 0.5
    assert scores["dice_1"] == pytest.approx(2 * 2 / (4 + 2)) and scores["dice_2"] == 0.0
    assert np.isnan(scores["recall_3"]) and np.isnan(scores["dice_3"])
    rows = [{"method": "a", "TLD": 0.5}, {"method": "a", "TLD": 1.0}, {"method": "b", "TLD": 0.0}]
    assert mean_by_method(rows, keys=("TLD",)) == {"a": {"TLD": 0.75}, "b": {"TLD": 0.0}}


def test_body_mask_keeps_lungs_and_trachea_drops_outside_air():
    ct = np.full((30, 30, 20), -1000, np.int16)  # outside air
    ct[5:25, 5:25, :] = 40  # body
    ct[7:14, 8:22, :15] = -850  # a lung (closed at the bottom... and top by tissue)
    ct[14:16, 14:16, :] = -1000  # trachea, leaving the volume at both ends
    body = body_mask(ct)
    assert body[10, 10, 5] and body[14, 14, 19] and body[14, 14, 0]
    assert not body[1, 1, 10] and not body[28, 15, 3]
    assert body.sum() == 20 * 20 * 20
    assert body_mask(np.full((4, 4, 4), -1000)).all()
