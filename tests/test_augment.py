"""The augmented stage-1 patch stream is a pure function of (seed, index): the same patch bitwise
for the same item whatever came before, in DataLoader workers, and a resumed training equals an
uninterrupted one with every augmentation drawn. Also checks that the MONAI candidate measured
by ``benchmarks/bench_augmentation.py`` (``benchmarks/_monai_augment.py``, not used by the
library: it was slower) is the same augmentation as the library's hand-written code."""

from __future__ import annotations

import importlib.util
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates
from test_data import hand_case

from deeptree.checkpoints import load_checkpoint
from deeptree.config import NetworkConfig, TrainConfig
from deeptree.stage1.data import (
    AugmentConfig,
    Stage1PatchDataset,
    augment_intensity,
    crop_patch,
    resample_patches,
)
from deeptree.stage1.task import stage1_task
from deeptree.train import train


def monai_candidate():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "_monai_augment.py"
    spec = importlib.util.spec_from_file_location("_monai_augment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NO_INTENSITY = dict(p_brightness=0.0, p_contrast=0.0, p_noise=0.0)
ALWAYS = replace(
    AugmentConfig(), p_rotate=1.0, p_scale=1.0, p_brightness=1.0, p_contrast=1.0, p_noise=1.0
)


def test_monai_candidate_resamples_as_the_hand_written_code():
    monai = monai_candidate()
    rng = np.random.default_rng(0)
    image = rng.random((40, 38, 36)).astype(np.float32)
    label = (rng.random((40, 38, 36)) > 0.7).astype(np.uint8)
    distance = rng.random((40, 38, 36)).astype(np.float32)
    size, centre = (9, 8, 7), np.array([20, 19, 17])
    for i in range(3):
        matrix = monai.draw_spatial(np.random.default_rng([9, i]), ALWAYS)
        reach = monai.spatial_reach(size, matrix)
        start, crop = centre - reach, 2 * reach + 1
        crops = {
            "image": crop_patch(image, start, crop, 0.0),
            "label": crop_patch(label, start, crop, 0),
            "distance": crop_patch(distance, start, crop, 1.0),
        }
        ours = monai.apply_spatial(crops, matrix, size)
        theirs = resample_patches(
            [(image, 1, 0.0), (label, 0, 0), (distance, 1, 1.0)], centre, size, matrix[:3, :3]
        )
        np.testing.assert_allclose(ours["image"], theirs[0], atol=1e-5)
        np.testing.assert_array_equal(ours["label"], theirs[1])
        np.testing.assert_allclose(ours["distance"], theirs[2], atol=1e-5)
        # and by hand: output voxel x reads the input at centre + M (x - (size - 1) / 2)
        index = np.array([2, 5, 1])
        pos = centre + matrix[:3, :3] @ (index - (np.array(size) - 1) / 2.0)
        assert (
            abs(ours["image"][tuple(index)] - map_coordinates(image, pos[:, None], order=1)[0])
            < 1e-5
        )
    # its draws: rotation and scaling independent with p 0.2, the scaling isotropic
    drawn = [
        monai.draw_spatial(np.random.default_rng([1, i]), AugmentConfig()) for i in range(2000)
    ]
    assert abs(np.mean([m is not None for m in drawn]) - (1 - 0.8 * 0.8)) < 0.03
    scale = monai.draw_spatial(
        np.random.default_rng(2), replace(AugmentConfig(), p_rotate=0.0, p_scale=1.0)
    )
    assert np.allclose(scale, np.diag([scale[0, 0]] * 3 + [1.0])) and 0.85 <= scale[0, 0] <= 1.25


def test_monai_candidate_intensity_steps_follow_the_hand_written_formulas():
    monai = monai_candidate()
    image = np.random.default_rng(0).random((12, 10, 8)).astype(np.float32)
    before = image.copy()
    off = replace(AugmentConfig(), **NO_INTENSITY)
    assert np.array_equal(monai.augment_intensity(image, np.random.default_rng(0), off), image)
    out = monai.augment_intensity(image, np.random.default_rng(1), replace(off, p_brightness=1.0))
    factor = out / image
    assert np.ptp(factor) < 1e-5 and 0.85 <= factor.mean() <= 1.15 and abs(factor.mean() - 1) > 1e-4
    out = monai.augment_intensity(image, np.random.default_rng(2), replace(off, p_contrast=1.0))
    centred = image - image.mean()
    slope = float((centred * (out - image.mean())).sum() / (centred**2).sum())
    assert np.abs(out - (centred * slope + image.mean())).max() < 1e-5  # (x - mean) f + mean
    assert 0.75 <= slope <= 1.25 and abs(slope - 1) > 1e-4
    noise = replace(off, p_noise=1.0)
    sds = [
        float((monai.augment_intensity(image, np.random.default_rng([3, i]), noise) - image).std())
        for i in range(20)
    ]
    assert max(sds) <= 0.03 * 1.1 and np.ptp(sds) > 0.005  # sd drawn in [0, 0.03]
    assert np.array_equal(image, before) and out.dtype == np.float32
    # the library's hand-written steps, for comparison: the same formulas
    out = augment_intensity(image, np.random.default_rng(1), replace(off, p_brightness=1.0))
    assert np.ptp(out / image) < 1e-5


def test_same_item_same_patch_bitwise_whatever_came_before():
    case = hand_case()
    ds = Stage1PatchDataset([case], (16, 16, 16), seed=4, augment=ALWAYS)
    first = ds[5]
    for i in range(5):  # other items in between: no state carried from item to item
        ds[i]
    again = Stage1PatchDataset([case], (16, 16, 16), seed=4, augment=ALWAYS)[5]
    for item in (ds[5], again):
        assert all(torch.equal(first[k], item[k]) for k in ("image", "label", "distance"))
    other = Stage1PatchDataset([case], (16, 16, 16), seed=5, augment=ALWAYS)[5]
    assert not torch.equal(first["image"], other["image"])


def test_workers_give_the_same_batches():
    case = hand_case()
    ds = Stage1PatchDataset([case], (16, 16, 16), seed=1, augment=ALWAYS, length=8)
    keys = ("image", "label", "distance")
    alone = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0))
    workers = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2))
    for a, b in zip(alone, workers, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in keys)


def test_resume_equals_uninterrupted_with_augmentation(tmp_path, deterministic):
    case = hand_case()
    net = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))
    cfg = TrainConfig(iterations=4, batch_size=2, validate_every=4, checkpoint_every=2, amp=False)

    def task():
        t = stage1_task([case], [], "amc+gul", net, cfg)
        t.dataset.augment = ALWAYS
        return t

    full_task = task()
    train(full_task, cfg, tmp_path / "full", device="cpu", progress=False)

    def interrupt_at_2(iteration, entry):
        if iteration == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(task(), cfg, tmp_path / "cut", device="cpu", progress=False, callback=interrupt_at_2)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["iteration"] == 2
    resumed_task = task()
    train(resumed_task, cfg, tmp_path / "cut", device="cpu", progress=False, resume=True)
    a, b = full_task.model.state_dict(), resumed_task.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
