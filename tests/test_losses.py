"""Tests of deeptree.stage1.losses: hand-computed values, perfect prediction, gradients, GUL weight."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeptree.config import LOSS_VARIANTS
from deeptree.io import InputError, read_nifti
from deeptree.stage1.losses import (
    DiceCEClDiceLoss,
    DiceCELoss,
    GeneralUnionLoss,
    Stage1Loss,
    deep_supervision_weights,
    gul_distance_weight,
    n_output_channels,
)


def tube(shape=(24, 24, 20), radius=3.0, centre=(12, 12)) -> np.ndarray:
    """A straight cylinder along k (bool)."""
    i, j = np.mgrid[: shape[0], : shape[1]]
    disc = (i - centre[0]) ** 2 + (j - centre[1]) ** 2 <= radius**2
    return np.repeat(disc[:, :, None], shape[2], axis=2)


def as5d(values, shape=(1, 1, 4, 1, 1)) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


# --- GUL --------------------------------------------------------------------------------------
def test_gul_hand_computed_value():
    # p, g, d on four voxels; w = d g + (1 - g) = [1, 0.5, 1, 1]
    p, g, d = [1.0, 0.0, 0.5, 0.2], [1, 1, 0, 0], [1.0, 0.5, 1.0, 1.0]
    numerator = 1.0001**0.7 + 0.5 * 0.0001**0.7 + 1.0  # 2.000862
    denominator = 1.0 + 0.5 * 0.9 + 0.05 + 0.02 + 1.0  # 2.52
    expected = 1.0 - numerator / denominator
    assert expected == pytest.approx(0.206007, abs=1e-6)
    loss = GeneralUnionLoss()(as5d(p), as5d(g), as5d(d))
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_gul_perfect_prediction_is_about_zero_and_misses_cost():
    g = torch.from_numpy(tube()).float()[None, None]
    d = torch.from_numpy(gul_distance_weight(tube()))[None, None]
    gul = GeneralUnionLoss()
    assert abs(float(gul(g, g, d))) < 1e-3
    assert float(gul(torch.zeros_like(g), g, d)) > 0.9
    # a false positive costs much less than a false negative of the same size (alpha = 0.1)
    fp = float(gul(torch.ones_like(g), g, d))
    assert 0 < fp < float(gul(torch.zeros_like(g), g, d))


def test_gul_gradients_finite_at_zero_probability():
    g = torch.from_numpy(tube()).float()[None, None]
    d = torch.from_numpy(gul_distance_weight(tube()))[None, None]
    logits = torch.full_like(g, -30.0, requires_grad=True)  # p ~ 1e-13
    GeneralUnionLoss()(torch.sigmoid(logits), g, d).backward()
    assert torch.isfinite(logits.grad).all()


# --- GUL distance weight ------------------------------------------------------------------------
def test_gul_weight_is_one_on_skeleton_and_background_and_falls_to_wall():
    mask = tube(radius=4.0)
    d = gul_distance_weight(mask)
    assert d.dtype == np.float32 and d.shape == mask.shape
    assert np.all(d[~mask] == 1.0)
    assert d.min() >= 0.0 and d.max() <= 1.0
    # centre line (away from the open ends, where thinning shortens the skeleton)
    assert np.all(d[12, 12, 4:16] == 1.0)
    profile = d[12:17, 12, 10]  # from the axis to the wall
    assert np.all(np.diff(profile) < 0)
    assert profile[-1] < 0.5


def test_gul_weight_normalised_by_radius():
    thin, thick = gul_distance_weight(tube(radius=2.0)), gul_distance_weight(tube(radius=6.0))
    # d = (distance to the background) / (the same at the axis), by hand on the discs:
    # radius 2: axis sqrt(5) from (13, 14); voxel (13, 12): sqrt(2) from (14, 13)
    assert thin[13, 12, 10] == pytest.approx(np.sqrt(2) / np.sqrt(5), abs=1e-6)
    # radius 6: axis sqrt(37) from (18, 13); voxel (15, 12): sqrt(10) from (18, 13)
    assert thick[15, 12, 10] == pytest.approx(np.sqrt(10) / np.sqrt(37), abs=1e-6)
    assert thin[14, 12, 10] == pytest.approx(1 / np.sqrt(5), abs=1e-6)  # last lumen voxels
    assert thick[18, 12, 10] == pytest.approx(1 / np.sqrt(37), abs=1e-6)
    # the axes weigh 1 in both although their radii differ 3x
    assert thin[12, 12, 10] == thick[12, 12, 10] == 1.0


def test_gul_weight_positive_in_two_voxel_wide_branch():
    mask = np.zeros((10, 10, 20), bool)
    mask[4:6, 4:5, :] = True  # two voxels wide: both halves are equally central
    d = gul_distance_weight(mask)
    assert np.all(d[mask] == 1.0)


def test_gul_weight_spacing_and_input_untouched():
    mask = tube().astype(np.uint8)
    before = mask.copy()
    d = gul_distance_weight(mask, spacing=(0.5, 0.5, 2.0))
    assert np.array_equal(mask, before)
    assert np.all(d[12, 12, 4:16] == 1.0)
    assert np.all(gul_distance_weight(np.zeros((4, 4, 4), np.uint8)) == 1.0)
    single = np.zeros((5, 5, 5), bool)
    single[2, 2, 2] = True
    assert gul_distance_weight(single)[2, 2, 2] == 1.0


def test_gul_weight_bad_input():
    with pytest.raises(InputError, match="3D"):
        gul_distance_weight(np.zeros((4, 4)))
    with pytest.raises(InputError, match="spacing"):
        gul_distance_weight(np.zeros((4, 4, 4)), spacing=(1, 0, 1))


def test_gul_weight_on_real_airway(cip_ct64_dir):
    vol = read_nifti(cip_ct64_dir / "airway.nii.gz")
    d = gul_distance_weight(vol.array, vol.spacing, name="airway.nii.gz")
    mask = vol.array > 0
    assert np.all(d[~mask] == 1.0)
    assert (d[mask] == 1.0).sum() >= 10  # the skeleton
    assert 0.0 <= d[mask].min() and d[mask].mean() < 1.0


# --- Dice + CE ----------------------------------------------------------------------------------
def test_dice_ce_hand_computed():
    logits = torch.zeros(1, 2, 2, 1, 1)  # softmax 0.5 everywhere
    target = torch.tensor([1, 0]).reshape(1, 1, 2, 1, 1)
    dice, ce = DiceCELoss()(logits, target)
    assert float(ce) == pytest.approx(math.log(2), abs=1e-6)
    # foreground: intersection 0.5, sum of p 1, sum of g 1 -> dice = (1 + s) / (2 + s)
    assert float(dice) == pytest.approx(1 - (1 + 1e-5) / (2 + 1e-5), abs=1e-6)


def test_dice_ignores_classes_absent_from_the_target():
    label = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    label[..., 2:5, 2:5, :] = 1  # class 1 only; classes 2 and 3 absent
    perfect = torch.nn.functional.one_hot(label[:, 0], 4).movedim(-1, 1).float() * 40 - 20
    dice, ce = DiceCELoss()(perfect, label)
    assert float(dice) == pytest.approx(0.0, abs=1e-5) and float(ce) < 1e-5
    # predicting an absent class is still penalised (by CE)
    wrong = perfect.clone()
    wrong[:, 3, 0, 0, 0] = 40.0
    assert float(DiceCELoss()(wrong, label)[1]) > float(ce)
    dice, ce = DiceCELoss()(torch.zeros(1, 4, 8, 8, 8), torch.zeros_like(label))
    assert float(dice) == 0.0 and float(ce) == pytest.approx(math.log(4), abs=1e-6)


def test_dice_sums_the_class_losses_as_eq_1():
    # Eq. 1: L_M = L_S(class 1) + L_S(class 2) + L_S(class 3), the class losses summed (not
    # averaged); classes absent from the batch add nothing
    label = torch.zeros(1, 1, 4, 1, 1, dtype=torch.long)
    label[0, 0, :, 0, 0] = torch.tensor([1, 2, 0, 0])
    logits = torch.zeros(1, 4, 4, 1, 1)  # softmax 0.25 everywhere
    dice, _ = DiceCELoss()(logits, label)
    s = 1e-5
    one_class = 1 - (2 * 0.25 + s) / (4 * 0.25 + 1 + s)  # intersection 0.25, sum p 1, sum g 1
    assert float(dice) == pytest.approx(2 * one_class, abs=1e-6)


def test_deep_supervision_weights_follow_nnunet():
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


# --- stage-1 variants ---------------------------------------------------------------------------
def anatomy_batch():
    label = np.zeros((16, 16, 16), np.uint8)
    label[6:10, 6:10, :] = 1
    label[2:4, 2:4, 4:12] = 3
    label[12:15, 10:13, 2:14] = 2
    d = gul_distance_weight(label)
    return torch.from_numpy(label)[None, None].long(), torch.from_numpy(d)[None, None]


@pytest.mark.parametrize("variant", LOSS_VARIANTS)
def test_stage1_loss_variants_perfect_and_gradients(variant):
    label, d = anatomy_batch()
    n = n_output_channels(variant)
    target = label if n == 4 else (label > 0).long()
    perfect = torch.nn.functional.one_hot(target[:, 0], n).movedim(-1, 1).float() * 40 - 20
    loss_fn = Stage1Loss(variant)
    loss, parts = loss_fn(perfect, label, d)
    assert float(loss) == pytest.approx(0.0, abs=1e-3)
    assert set(parts) == {"dice", "ce", "airway_p"} | ({"gul"} if "gul" in variant else set())
    # the logged airway probability is the batch mean of 1 - p(background)
    assert parts["airway_p"] == pytest.approx(float((label > 0).float().mean()), abs=1e-3)
    logits = torch.randn(1, n, 16, 16, 16, requires_grad=True)
    loss, _ = loss_fn(logits, label, d)
    loss.backward()
    assert loss.item() > 0.5 and torch.isfinite(logits.grad).all()


def test_stage1_loss_deep_supervision_and_errors():
    label, d = anatomy_batch()
    outputs = [
        torch.randn(1, 4, 16, 16, 16),
        torch.randn(1, 4, 8, 8, 8),
        torch.randn(1, 4, 4, 4, 4),
    ]
    loss_fn = Stage1Loss("amc+gul")
    total, _ = loss_fn(outputs, label, d)
    full, _ = loss_fn.single(outputs[0], label, d)
    half, _ = loss_fn.single(outputs[1], label[..., ::2, ::2, ::2], d[..., ::2, ::2, ::2])
    assert float(total) == pytest.approx(2 / 3 * float(full) + 1 / 3 * float(half), rel=1e-5)
    with pytest.raises(InputError, match="output channels"):
        loss_fn(torch.randn(1, 2, 16, 16, 16), label, d)
    with pytest.raises(InputError, match="distance"):
        loss_fn(outputs[0], label, None)
    with pytest.raises(InputError, match="variant"):
        Stage1Loss("dice")


def test_every_parameter_gets_a_gradient_and_the_lowest_head_only_zeros():
    """The lowest deep-supervision head (weight 0) takes part in the step with a gradient of
    zeros, so DistributedDataParallel needs no search for unused parameters; the loss value
    and every other gradient are those of the two weighted outputs alone."""
    from deeptree.config import get_config
    from deeptree.networks import stage1_network

    torch.manual_seed(0)
    model = stage1_network(get_config("smoke").stage1_net, "amc+gul")
    model.train()
    label, d = anatomy_batch()
    x = torch.randn(1, 1, 16, 16, 16)
    loss_fn = Stage1Loss("amc+gul")
    outputs = model(x)
    assert len(outputs) == 3
    total, _ = loss_fn(outputs, label, d)
    total.backward()
    unused = [p for p in model.parameters() if p.grad is None]
    assert not unused, f"{len(unused)} parameters got no gradient"
    # the head of the quarter-resolution output: its output channels feed outputs[2] alone
    silent = [h for h in model.deep_supervision_heads if not any(p.grad.any() for p in h.parameters())]
    assert len(silent) == 1, "exactly one head (the weight-0 one) has a gradient of zeros"
    lowest = {id(p) for p in silent[0].parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    # the same loss written without the weight-0 output: the same value and gradients, bit for bit
    model.zero_grad(set_to_none=True)
    outputs = model(x)
    full, _ = loss_fn.single(outputs[0], label, d)
    half, _ = loss_fn.single(outputs[1], label[..., ::2, ::2, ::2], d[..., ::2, ::2, ::2])
    weights = deep_supervision_weights(3)
    reference = weights[0] * full + weights[1] * half
    assert reference.item() == total.item()
    reference.backward()
    for name, param in model.named_parameters():
        if id(param) not in lowest:
            assert torch.equal(param.grad, grads[name]), name


# --------------------------------------------------------------------------------------------
# soft clDice on one channel (the clDice baseline): MONAI >= 1.6
# --------------------------------------------------------------------------------------------
def _tube_and_broken_tube(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A straight 4x4 tube along the last axis (target) and the same tube cut in two."""
    target = torch.zeros(1, 1, size, size, size)
    target[0, 0, 6:10, 6:10, :] = 1.0
    broken = target.clone()
    broken[..., 6:10] = 0.0
    return target, broken


def test_monai_soft_cldice_is_not_zero_on_one_channel():
    """MONAI 1.3 to 1.5 keep the channels ``[:, 1:]``: on a single-channel probability (how
    ``DiceCEClDiceLoss`` calls it) nothing is left and the term is 0 whatever the input, so the
    clDice baseline silently trains with plain DiceCE. pyproject.toml asks for monai>=1.6."""
    from monai.losses import SoftclDiceLoss

    target, broken = _tube_and_broken_tube()
    loss = SoftclDiceLoss(iter_=3)
    assert float(loss(target, target)) < 0.01  # a perfect prediction
    missed = float(loss(broken, target))
    assert missed > 0.05, (
        f"soft clDice of a broken tube is {missed}: this MONAI ignores a single channel"
    )
    assert float(loss(torch.zeros_like(target), target)) > missed  # nothing predicted: worse


def test_cldice_baseline_term_is_not_zero_when_the_prediction_misses():
    """The clDice term of the clDice baseline (``DiceCEClDiceLoss``) on a prediction that
    misses part of the tube, and its share of the total loss."""
    target, broken = _tube_and_broken_tube()
    label = target.long()
    logits = torch.cat([1 - broken, broken], dim=1) * 20 - 10  # two-class logits of the cut tube
    total, parts = DiceCEClDiceLoss(weight=0.5, iterations=3)(logits, label)
    assert parts["cldice"] > 0.05
    base, _ = DiceCEClDiceLoss(weight=0.0, iterations=3)(logits, label)
    assert float(total) == pytest.approx(float(base) + 0.5 * parts["cldice"], rel=1e-5)
