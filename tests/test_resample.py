"""Tests of deeptree.resample and of predict/segment on the checkpoint's spacing: the input grid
comes back exactly, a known object survives the round trip, matching spacings are not resampled,
old checkpoints fall back with a warning, and the training tasks record spacing and intensity."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from deeptree.checkpoints import LoadedModel
from deeptree.config import NetworkConfig, TrainConfig
from deeptree.io import InputError, read_nifti, write_nifti
from deeptree.phantom_config import phantom_profile
from deeptree.pipeline import model_spacing, segment, segment_file
from deeptree.resample import (
    SPACING_RTOL,
    checkpoint_spacing,
    from_model_grid,
    resample_to_grid,
    resample_to_spacing,
    same_spacing,
    to_model_grid,
    training_record,
)
from deeptree.stage1.data import CT_WINDOW_HU, Stage1Case
from deeptree.stage1.predict import predict_file, predict_stage1
from deeptree.stage1.task import stage1_task

ANISO = (0.7, 0.7, 1.0)
MODEL_MM = 1.5


class DarkIsAirway(torch.nn.Module):
    """A stand-in stage-1 network: airway probability ``sigmoid(2 * 20 (level - x))`` on the
    normalised CT ``x`` (2 channels). With ``level`` 0.35 (-440 HU, half-way between lumen air
    and the soft tissue of :func:`capsule_ct`) its 0.5 surface is the partial-volume midpoint,
    so a resampled CT keeps the object's volume; smooth, so the probability is interpolable."""

    def __init__(self, level: float = 0.35):
        super().__init__()
        self.level = level
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        airway = (self.level - x) * 20.0
        return torch.cat([-airway, airway], dim=1)


def loaded(spacing=(MODEL_MM,) * 3, **extra) -> LoadedModel:
    meta = {"stage": 1, "variant": "plain", "patch_size": [32, 32, 32], "overlap": 0.25}
    if spacing is not None:
        meta["spacing"] = list(spacing)
    return LoadedModel(DarkIsAirway().eval(), {**meta, **extra})


def capsule_ct(spacing, shape, radius_mm=3.0):
    """HU: soft tissue (40) inside a 4-voxel air margin, an oblique air capsule (radius
    ``radius_mm``) inside the tissue; and the capsule's exact volume (mm^3)."""
    spacing = np.asarray(spacing, float)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * spacing
    extent = (np.asarray(shape) - 1) * spacing
    p0, p1 = extent * [0.25, 0.3, 0.2], extent * [0.75, 0.65, 0.8]
    axis = (p1 - p0) / np.linalg.norm(p1 - p0)
    t = np.clip((ijk - p0) @ axis, 0, np.linalg.norm(p1 - p0))
    inside = np.linalg.norm(ijk - (p0 + t[..., None] * axis), axis=-1) <= radius_mm
    ct = np.full(shape, -1000, np.int16)
    ct[4:-4, 4:-4, 4:-4] = 40
    ct[inside] = -1000
    length = np.linalg.norm(p1 - p0)
    volume = np.pi * radius_mm**2 * length + 4 / 3 * np.pi * radius_mm**3
    return ct, volume


def affine_of(spacing, origin=(-20.0, 13.5, 101.0)):
    affine = np.diag([*spacing, 1.0])
    affine[0, 0] = -spacing[0]  # a flipped axis (RAS/LPS): the way back must keep it
    affine[:3, 3] = origin
    return affine


def dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * (a & b).sum() / (a.sum() + b.sum())


# --------------------------------------------------------------------------------------------
# the resampling helpers
# --------------------------------------------------------------------------------------------
def test_same_spacing_tolerance_and_identity_path_returns_the_input_itself():
    assert same_spacing((1.5, 1.5, 1.5), (1.5 * (1 + SPACING_RTOL / 2),) * 3)
    assert not same_spacing((1.5, 1.5, 1.5), (1.5, 1.5, 1.5 * (1 + 2 * SPACING_RTOL)))
    ct, _ = capsule_ct(ANISO, (30, 30, 20))
    ras = np.abs(affine_of(ANISO))  # already RAS: nothing to flip either
    out, grid = to_model_grid(ct, ras, ANISO, "ct")
    assert out is ct and not grid.resampled and np.array_equal(grid.model_affine, ras)
    mask = (ct < -500).astype(np.uint8)
    assert np.array_equal(from_model_grid(mask, grid, "mask"), mask)
    out, grid = to_model_grid(ct, ras, None, "ct")  # no record: no resampling
    assert out is ct and not grid.resampled
    # an LAS CT at the model's spacing: the same values, flipped to RAS and exactly back
    out, grid = to_model_grid(ct, affine_of(ANISO), ANISO, "ct")
    assert not grid.resampled and grid.reoriented and np.array_equal(out, ct[::-1])
    assert np.array_equal(from_model_grid(out < -500, grid, "mask"), mask)


def test_spacing_keeps_orientation_and_corner_and_the_way_back_hits_the_grid():
    ct, _ = capsule_ct(ANISO, (40, 36, 30))
    affine = affine_of(ANISO)
    coarse, coarse_affine = resample_to_spacing(ct, affine, (MODEL_MM,) * 3)
    assert coarse.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(coarse_affine[:3, :3], axis=0), MODEL_MM)
    np.testing.assert_allclose(np.sign(np.diag(coarse_affine)[:3]), np.sign(np.diag(affine)[:3]))
    np.testing.assert_allclose(coarse_affine[:3, 3], affine[:3, 3])
    # field of view covered: (n - 1) * spacing of the input fits in the output's extent
    extent_in = (np.array(ct.shape) - 1) * ANISO
    assert np.all((np.array(coarse.shape) - 1) * MODEL_MM >= extent_in - MODEL_MM)
    back = resample_to_grid(coarse, coarse_affine, ct.shape, affine, "bilinear")
    assert back.shape == ct.shape


# --------------------------------------------------------------------------------------------
# predict and segment on a hand-built anisotropic 0.7 x 0.7 x 1.0 mm case
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aniso_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aniso")
    ct, volume = capsule_ct(ANISO, (96, 84, 64))
    path = write_nifti(folder / "ct.nii.gz", ct, affine_of(ANISO))
    return path, volume


def test_predict_on_an_anisotropic_ct_returns_its_grid_and_keeps_the_tube(tmp_path, aniso_file):
    path, volume = aniso_file
    model = loaded()
    out = predict_file(
        None,
        path,
        tmp_path / "mask.nii.gz",
        device="cpu",
        loaded=model,
        classes_path=tmp_path / "classes.nii.gz",
    )
    ct, mask = read_nifti(path), read_nifti(out)
    assert mask.array.shape == ct.array.shape and mask.array.dtype == np.uint8
    assert np.array_equal(mask.affine, ct.affine)
    assert read_nifti(tmp_path / "classes.nii.gz").array.shape == ct.array.shape
    voxel = np.prod(ANISO)
    # the tube's volume after 0.7x0.7x1.0 -> 1.5 mm -> back: within 5 % of the exact capsule
    # (measured +2.4 %; the direct prediction on the input grid, no resampling: -0.1 %)
    direct = predict_stage1(model.model, ct.array, (32, 32, 32), overlap=0.25, device="cpu").mask
    assert abs(direct.sum() * voxel / volume - 1) < 0.01
    assert abs(mask.array.sum() * voxel / volume - 1) < 0.05
    assert dice(mask.array, direct) > 0.9


def test_segment_file_on_an_anisotropic_ct_returns_its_grid_and_keeps_the_tube(
    tmp_path, aniso_file
):
    path, volume = aniso_file
    out = segment_file(path, tmp_path / "seg.nii.gz", loaded(), "gapfill", device="cpu")
    ct, mask = read_nifti(path), read_nifti(out)
    assert mask.array.shape == ct.array.shape and np.array_equal(mask.affine, ct.affine)
    # nearest neighbour from 1.5 mm: the tube within 5 % (measured +1.3 %)
    assert abs(mask.array.sum() * np.prod(ANISO) / volume - 1) < 0.05
    from deeptree.masks import label_components

    assert label_components(mask.array)[1] == 1  # upsampled by nearest: still one component


def test_matching_spacing_is_not_resampled_bitwise(tmp_path):
    spacing = (MODEL_MM,) * 3
    ct, _ = capsule_ct(spacing, (40, 36, 44))
    path = write_nifti(tmp_path / "ct.nii.gz", ct, affine_of(spacing))
    model = loaded(spacing)
    out = predict_file(None, path, tmp_path / "p.nii.gz", device="cpu", loaded=model)
    direct = predict_stage1(
        model.model, read_nifti(path).array, (32, 32, 32), overlap=0.25, device="cpu"
    )
    assert np.array_equal(read_nifti(out).array, direct.mask)
    seg = segment_file(path, tmp_path / "s.nii.gz", model, "gapfill", device="cpu")
    volume = read_nifti(path)
    expected = segment(volume.array, model, "gapfill", affine=volume.affine, device="cpu").mask
    assert np.array_equal(read_nifti(seg).array, expected)


# --------------------------------------------------------------------------------------------
# the real samples (copied, never written)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sample", "model_mm"),
    [("totalseg_chest", 2.0), ("cip_ct64", 2.6)],
)
def test_real_samples_come_back_on_their_grid(tmp_path, samples_dir, sample, model_mm):
    path = tmp_path / "ct.nii.gz"
    shutil.copy(samples_dir / sample / "ct.nii.gz", path)
    model = loaded((model_mm,) * 3)
    out = predict_file(None, path, tmp_path / "mask.nii.gz", device="cpu", loaded=model)
    ct, mask = read_nifti(path), read_nifti(out)
    assert mask.array.shape == ct.array.shape and np.array_equal(mask.affine, ct.affine)
    # the stand-in finds the air inside the body (lungs and airways): the same at the
    # model's spacing as on the CT's own grid
    direct = predict_stage1(model.model, ct.array, (32, 32, 32), overlap=0.25, device="cpu").mask
    assert direct.sum() > 1000 and dice(mask.array, direct) > 0.9
    # two stages without a connector (stage 1, largest component): the grid comes back too
    seg = read_nifti(segment_file(path, tmp_path / "seg.nii.gz", model, None, device="cpu"))
    assert seg.array.shape == ct.array.shape and np.array_equal(seg.affine, ct.affine)


# --------------------------------------------------------------------------------------------
# the record in the checkpoint and the fallback
# --------------------------------------------------------------------------------------------
def test_old_checkpoints_fall_back_with_a_warning():
    # the cpu phantoms were 1.5 mm when checkpoints had no record (1 mm since): not today's
    assert phantom_profile("cpu").spacing_mm != 1.5
    with pytest.warns(UserWarning, match="its profile 'cpu' had then: 1.5 mm"):
        assert checkpoint_spacing({"profile": "cpu"}, "old.pt") == (1.5, 1.5, 1.5)
    with pytest.warns(UserWarning, match="its profile 'gpu' had then: 0.7 mm"):
        assert checkpoint_spacing({"profile": "gpu"}, "old.pt") == (0.7, 0.7, 0.7)
    with pytest.warns(UserWarning, match="its own spacing"):
        assert checkpoint_spacing({}, "old.pt") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoint_spacing({"spacing": [0.7, 0.7, 1.0], "profile": "cpu"}) == ANISO


def test_old_checkpoint_is_resampled_to_its_profile(tmp_path, aniso_file):
    path, _ = aniso_file
    model = loaded(None, profile="cpu")
    with pytest.warns(UserWarning, match="records no training spacing"):
        out = predict_file(None, path, tmp_path / "m.nii.gz", device="cpu", loaded=model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recorded = predict_file(None, path, tmp_path / "r.nii.gz", device="cpu", loaded=loaded())
    assert np.array_equal(read_nifti(out).array, read_nifti(recorded).array)


def test_mismatched_stages_and_intensity_are_refused():
    stage2 = LoadedModel(DarkIsAirway(), {"stage": 2, "spacing": [0.7, 0.7, 0.7]})
    with pytest.raises(InputError, match="stage 1 was trained at"):
        model_spacing(loaded(), stage2, "s1.pt")
    assert model_spacing(loaded(), LoadedModel(DarkIsAirway(), {"spacing": [1.5] * 3})) == (
        1.5,
        1.5,
        1.5,
    )
    other = {
        "window_hu": [-1200.0, 400.0],
        "normalisation": "clip to window_hu, map linearly to [0, 1]",
    }
    with pytest.raises(InputError, match="s1.pt: trained with intensity"):
        checkpoint_spacing({"spacing": [1.5] * 3, "intensity": other}, "s1.pt")
    with pytest.raises(InputError, match="recorded spacing"):
        checkpoint_spacing({"spacing": [1.5, 0, 1.5]}, "s1.pt")


def test_training_tasks_record_spacing_and_intensity():
    shape = (20, 20, 20)
    label = np.zeros(shape, np.uint8)
    label[8:12, 8:12, 2:18] = 1
    locations = [np.zeros((0, 3), np.int32), np.argwhere(label == 1).astype(np.int32)]
    locations += [np.zeros((0, 3), np.int32)] * 2
    case = Stage1Case(
        "c", np.zeros(shape, np.float32), label, np.ones(shape, np.float32), locations,
        ANISO, affine_of(ANISO),
    )  # fmt: skip
    net = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))
    task = stage1_task([case], [], "plain", net, TrainConfig(iterations=1), profile="smoke")
    assert task.meta["spacing"] == list(ANISO)
    assert task.meta["intensity"]["window_hu"] == list(CT_WINDOW_HU)
    # a cohort of several spacings: the per-axis median
    record = training_record([(0.6, 0.6, 1.0), (0.8, 0.7, 1.25), (0.7, 0.9, 0.5)])
    assert record["spacing"] == [0.7, 0.7, 1.0]
    with pytest.raises(InputError, match="no cases"):
        training_record([])


def test_stage2_task_records_spacing():
    from tree_builders import binary_tree, rasterize

    from deeptree.config import Stage2DataConfig
    from deeptree.stage2.data import prepare_stage2_source
    from deeptree.stage2.task import stage2_task

    mask, _ = rasterize(binary_tree(depth=2, trachea_radius=3.0), (1.0, 1.0, 1.0))
    source = prepare_stage2_source(np.where(mask, -1000, -850), mask, (1.0, 1.0, 1.0), "t")
    net = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))
    task = stage2_task([source], [], net, TrainConfig(iterations=1), data=Stage2DataConfig())
    assert task.meta["spacing"] == [1.0, 1.0, 1.0]
    assert task.meta["intensity"]["window_hu"] == list(CT_WINDOW_HU)
