"""One canonical orientation (RAS) for everything a model reads, one voxel-size rule for every
reader, and affines that cannot place a voxel refused (issue 29).

The model stand-in looks one voxel further along +i, +j, +k of the array it is given, so that it
sees a mirrored or transposed CT differently (as a trained network does): the masks of the same
phantom stored in several voxel orders are identical only if every file reaches the model in
the same (RAS) order and the result goes back by the exact inverse.
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeptree.checkpoints import LoadedModel
from deeptree.cli import main
from deeptree.io import InputError, read_nifti, write_nifti
from deeptree.phantom import generate_case
from deeptree.pipeline import segment_file
from deeptree.stage1.predict import predict_file

PATCH = [32, 32, 32]


class LooksOneWay(torch.nn.Module):
    """Airway where the voxel one step along +i, +j and +k of the input array is dark
    (normalised CT below 0.35, about -440 HU): a network with a sense of direction."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        ahead = F.pad(x, (0, 1, 0, 1, 0, 1), value=1.0)[:, :, 1:, 1:, 1:]
        airway = (0.35 - ahead) * 20.0
        return torch.cat([-airway, airway], dim=1)


def looks_one_way(spacing_mm: float, **extra) -> LoadedModel:
    meta = {"stage": 1, "variant": "plain", "patch_size": PATCH, "overlap": 0.25}
    return LoadedModel(LooksOneWay().eval(), {**meta, "spacing": [spacing_mm] * 3, **extra})


def reordered(array, affine, flips=(), perm=(0, 1, 2)):
    """The same volume in another voxel order: ``flips`` voxel axes reversed, then the axes
    permuted by ``perm``, with the affine that keeps every voxel at its world position."""
    array, affine = np.asarray(array), np.asarray(affine, float)
    flip = np.eye(4)
    for axis in flips:
        flip[axis, axis], flip[axis, 3] = -1.0, array.shape[axis] - 1
    array, affine = np.flip(array, flips), affine @ flip
    return np.ascontiguousarray(array.transpose(perm)), affine[:, [*perm, 3]]


def back_to_ras(array, flips=(), perm=(0, 1, 2)):
    """Undo :func:`reordered` on an array of the reordered grid."""
    return np.flip(np.asarray(array).transpose(np.argsort(perm)), flips)


#: name -> (flipped axes, axis permutation) of the stored file, from the RAS phantom
ORDERS = {
    "RAS": ((), (0, 1, 2)),
    "LPS": ((0, 1), (0, 1, 2)),
    "RAI (head-foot flipped)": ((2,), (0, 1, 2)),
    "SLA (transposed)": ((0,), (2, 0, 1)),
}


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    """A smoke phantom (stored RAS, 2.6 mm) written in every voxel order of :data:`ORDERS`."""
    folder = tmp_path_factory.mktemp("orders")
    case = generate_case("smoke", 0)
    assert nib.aff2axcodes(case.affine) == ("R", "A", "S")
    files = {}
    for name, (flips, perm) in ORDERS.items():
        array, affine = reordered(case.ct, case.affine, flips, perm)
        path = folder / f"{name.split()[0]}.nii.gz"
        files[name] = write_nifti(path, array, affine)
        assert "".join(nib.aff2axcodes(read_nifti(path).affine)) == name.split()[0]
    return case, files


@pytest.mark.parametrize("model_mm", [2.6, 2.0], ids=["same spacing", "resampled"])
def test_predict_and_segment_give_the_same_mask_in_every_voxel_order(
    phantom_files, tmp_path, model_mm
):
    case, files = phantom_files
    model = looks_one_way(model_mm)
    masks = {}
    for name, path in files.items():
        flips, perm = ORDERS[name]
        out = read_nifti(predict_file(None, path, tmp_path / f"p{model_mm}.nii.gz", device="cpu",
                                      loaded=model))  # fmt: skip
        # on the file's own grid, and the same voxels in the world as the RAS file's
        assert np.array_equal(out.affine, read_nifti(path).affine)
        masks[name] = back_to_ras(out.array, flips, perm)
        seg = read_nifti(segment_file(path, tmp_path / f"s{model_mm}.nii.gz", model, "gapfill",
                                      device="cpu"))  # fmt: skip
        masks[name + " segment"] = back_to_ras(seg.array, flips, perm)
    assert masks["RAS"].sum() > 100 and masks["RAS segment"].sum() > 100
    for name in ORDERS:
        assert np.array_equal(masks[name], masks["RAS"]), name
        assert np.array_equal(masks[name + " segment"], masks["RAS segment"]), name


def test_a_checkpoint_of_another_orientation_is_refused_and_no_record_means_ras(
    phantom_files, tmp_path
):
    _, files = phantom_files
    with pytest.raises(InputError, match="lps.pt: trained in voxel orientation 'LPS'"):
        predict_file("lps.pt", files["LPS"], tmp_path / "m.nii.gz", device="cpu",
                     loaded=looks_one_way(2.6, orientation="LPS"))  # fmt: skip
    assert not (tmp_path / "m.nii.gz").exists()
    # the shipped demo weights record none: trained on RAS phantoms, they load and run
    from deeptree import demo
    from deeptree.checkpoints import load_checkpoint, save_checkpoint
    from deeptree.config import NetworkConfig, TrainConfig
    from deeptree.networks import stage1_network
    from deeptree.stage1.predict import load_stage1_model
    from deeptree.train import make_optimizer

    stage1, _ = demo.demo_checkpoints()
    assert "orientation" not in load_checkpoint(stage1)["meta"]
    assert load_stage1_model(stage1).meta["stage"] == 1
    # a checkpoint file that records another orientation is refused when loaded
    net = stage1_network(NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16)), "plain")
    cfg = TrainConfig(iterations=1)
    meta = {"stage": 1, "variant": "plain", "filters": [2, 4, 8, 16], "patch_size": [16] * 3,
            "orientation": "LAS"}  # fmt: skip
    path = save_checkpoint(tmp_path / "last.pt", net, make_optimizer(net, cfg), 1, cfg, meta)
    with pytest.raises(InputError, match=r"last\.pt: trained in voxel orientation 'LAS'"):
        load_stage1_model(path)


def test_training_tasks_record_the_orientation():
    from deeptree.resample import training_record

    assert training_record([(1.0, 1.0, 1.0)])["orientation"] == "RAS"


def _dataset(root, case, flips):
    """An ATM'22-layout dataset of one case stored in the voxel order ``flips`` of :func:`reordered`."""
    for sub, array in (("imagesTr", case.ct), ("labelsTr", case.airway), ("lungsTr", case.lung)):
        data, affine = reordered(array, case.affine, flips)
        name = f"{case.id}_0000.nii.gz" if sub == "imagesTr" else f"{case.id}.nii.gz"
        write_nifti(root / sub / name, data.astype(np.int16 if sub == "imagesTr" else np.uint8),
                    affine)  # fmt: skip
    return root


def test_training_reads_an_lps_case_in_ras(tmp_path):
    from deeptree.io import list_cases
    from deeptree.stage1.cache import load_stage1_case
    from deeptree.stage2.task import load_sources

    case = generate_case("smoke", 1)
    ras = _dataset(tmp_path / "ras", case, ())
    lps = _dataset(tmp_path / "lps", case, (0, 1))
    a = load_stage1_case(list_cases(ras)[0], tmp_path / "cache_ras")
    b = load_stage1_case(list_cases(lps)[0], tmp_path / "cache_lps")
    for key in ("image", "label", "distance"):
        assert np.array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key))), key
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)
    assert tuple(b.spacing) == pytest.approx(tuple(a.spacing))
    # the cache entry says so, and re-read from the cache it is the same
    meta = json.loads((tmp_path / "cache_lps" / case.id / "meta.json").read_text())
    assert meta["orientation"] == "RAS"
    again = load_stage1_case(list_cases(lps)[0], tmp_path / "cache_lps")
    assert np.array_equal(np.asarray(again.label), np.asarray(a.label))
    # stage 2: the same sources (mask, tree, room) from either file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        (s_ras,), (s_lps,) = load_sources(ras), load_sources(lps)
    assert np.array_equal(s_ras.airway, s_lps.airway) and np.array_equal(s_ras.image, s_lps.image)
    assert np.array_equal(s_ras.room, s_lps.room)


# --------------------------------------------------------------------------------------------
# the shipped demo weights on a real LPS CT (the figures of the model card)
# --------------------------------------------------------------------------------------------
def test_the_demo_weights_find_the_trachea_of_the_real_lps_chest(tmp_path, capsys):
    from deeptree.locations import samples_dir
    from deeptree.tree_summary import describe_tree

    source = samples_dir() / "totalseg_chest" / "ct.nii.gz"
    assert nib.aff2axcodes(nib.load(str(source)).affine) == ("L", "P", "S")
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(source), str(out), "--device", "cpu"]) == 0
    assert "using the demo weights" in capsys.readouterr().out
    mask = read_nifti(out)
    summary = describe_tree(mask.array, mask.spacing, mask.affine)
    assert summary["trachea_found"], summary
    assert summary["components"] == 1 and summary["generations_reached"] >= 2, summary


# --------------------------------------------------------------------------------------------
# one voxel-size rule: the affine (sform when set), a warning when qform and sform disagree
# --------------------------------------------------------------------------------------------
def _write_disagreeing(path, array, sform_mm=2.6, qform_mm=1.0):
    """A NIfTI whose sform says ``sform_mm`` voxels and whose qform (and pixdim) ``qform_mm``."""
    image = nib.Nifti1Image(array, np.diag([sform_mm] * 3 + [1.0]))
    image.set_qform(np.diag([qform_mm] * 3 + [1.0]), code=1)
    image.set_sform(np.diag([sform_mm] * 3 + [1.0]), code=2)
    nib.save(image, str(path))
    assert image.header.get_zooms()[:3] == (qform_mm,) * 3  # pixdim follows the qform
    return path


def test_disagreeing_qform_and_sform_warn_once_naming_the_file(tmp_path):
    from deeptree.io_checks import HeaderGeometryWarning

    mask = np.zeros((16, 16, 30), np.uint8)
    mask[5:10, 5:10, 5:25] = 1
    path = _write_disagreeing(tmp_path / "both.nii.gz", mask)
    with pytest.warns(HeaderGeometryWarning, match=r"both\.nii\.gz: the header's qform and sform disagree"):
        volume = read_nifti(path)
    assert volume.spacing == pytest.approx((2.6, 2.6, 2.6))  # the sform's, not pixdim's
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeaderGeometryWarning)
        read_nifti(path)  # once per file
    # a header with only one of them set, or both equal, does not warn; without an sform the
    # qform gives the voxel size
    qform_only = nib.Nifti1Image(mask, np.diag([1.5, 1.5, 3.0, 1.0]))
    qform_only.set_sform(None, code=0)
    qform_only.set_qform(np.diag([1.5, 1.5, 3.0, 1.0]), code=1)
    nib.save(qform_only, str(tmp_path / "qform.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeaderGeometryWarning)
        read_nifti(write_nifti(tmp_path / "plain.nii.gz", mask, np.diag([2.6, 2.6, 2.6, 1.0])))
        assert read_nifti(tmp_path / "qform.nii.gz").spacing == pytest.approx((1.5, 1.5, 3.0))


def test_every_reader_takes_the_voxel_size_from_the_affine(tmp_path, capsys):
    """``labels`` (anatomy classes by diameter in mm), training preparation and the thick-slice
    check see the sform's 2.6 mm, as ``predict`` does, not the qform/pixdim 1 mm."""
    from deeptree.cli._cases import warn_thick_inputs
    from deeptree.io import list_cases
    from deeptree.io_checks import ThickSliceWarning
    from deeptree.stage1.cache import load_stage1_case

    case = generate_case("smoke", 2)
    both, clean = tmp_path / "both", tmp_path / "clean"
    for root in (both, clean):
        (root / "imagesTr").mkdir(parents=True)
        (root / "labelsTr").mkdir()
    write_nifti(clean / "imagesTr" / "C_0000.nii.gz", case.ct, np.diag([2.6] * 3 + [1.0]))
    write_nifti(clean / "labelsTr" / "C.nii.gz", case.airway.astype(np.uint8),
                np.diag([2.6] * 3 + [1.0]))  # fmt: skip
    _write_disagreeing(both / "imagesTr" / "C_0000.nii.gz", case.ct)
    _write_disagreeing(both / "labelsTr" / "C.nii.gz", case.airway.astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = load_stage1_case(list_cases(clean)[0])
        b = load_stage1_case(list_cases(both)[0])
        assert main(["labels", "--in", str(clean / "labelsTr"), "--out", str(tmp_path / "la")]) == 0
        assert main(["labels", "--in", str(both / "labelsTr"), "--out", str(tmp_path / "lb")]) == 0
    assert tuple(b.spacing) == pytest.approx((2.6, 2.6, 2.6))
    assert np.array_equal(np.asarray(a.label), np.asarray(b.label))
    assert np.array_equal(np.asarray(a.distance), np.asarray(b.distance))
    assert np.array_equal(read_nifti(tmp_path / "la" / "C.nii.gz").array,
                          read_nifti(tmp_path / "lb" / "C.nii.gz").array)  # fmt: skip
    with pytest.warns(ThickSliceWarning, match="2.6 x 2.6 x 2.6 mm"):
        warn_thick_inputs([both / "imagesTr" / "C_0000.nii.gz"])


# --------------------------------------------------------------------------------------------
# an affine that places no voxel: refused at read time, one line, the batch goes on
# --------------------------------------------------------------------------------------------
def _write_singular(path, array):
    image = nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0]))
    singular = np.diag([2.0, 2.0, 2.0, 1.0])
    singular[:3, 1] = singular[:3, 0]  # the j axis runs along i: no volume
    image.set_sform(singular, code=2)
    image.set_qform(None, code=0)
    nib.save(image, str(path))
    return path


def _tiny_ct():
    ct = np.full((24, 24, 24), -1000, np.int16)
    ct[3:-3, 3:-3, :] = 40
    ct[9:14, 9:14, :] = -1000
    return ct


def test_a_singular_affine_is_refused_at_read_time_naming_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    path = _write_singular(data / "imagesTr" / "A_0000.nii.gz", _tiny_ct())
    with pytest.raises(InputError, match=r"A_0000\.nii\.gz: the affine is not invertible"):
        read_nifti(path)
    header = nib.Nifti1Header()  # written as is: nibabel cannot make a qform of a NaN affine
    header["sform_code"], header["qform_code"] = 2, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = [2, 0, 0, 0], [0, np.nan, 0, 0], [0, 0, 2, 0]
    header["pixdim"][1:4] = 2.0
    nib.save(nib.Nifti1Image(_tiny_ct(), None, header), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match=r"nan\.nii\.gz: the affine holds NaN or infinite values"):
        read_nifti(tmp_path / "nan.nii.gz")
    mask = (_tiny_ct() < -500).astype(np.uint8)
    mask[:3], mask[-3:], mask[:, :3], mask[:, -3:] = 0, 0, 0, 0
    write_nifti(data / "labelsTr" / "A.nii.gz", mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    # a second, sound case, so that the validation split leaves a training case
    write_nifti(data / "imagesTr" / "B_0000.nii.gz", _tiny_ct(), np.diag([2.0, 2.0, 2.0, 1.0]))
    write_nifti(data / "labelsTr" / "B.nii.gz", mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    # not resampled (train reads it as it is): refused all the same, in one line, exit 2
    status = main(["train", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "run"),
                   "--cache", str(tmp_path / "cache"), "--device", "cpu", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("deeptree train: error: ")
    assert f"{path}: the affine is not invertible" in errors[0]
    assert not (tmp_path / "run" / "last.pt").exists()
    # segment (a batch of one, resampled to the model's voxel size): the case fails, one line
    status = main(["segment", str(path), str(tmp_path / "seg.nii.gz"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and "positive definite" not in err
    assert len([line for line in err.splitlines() if "affine is not invertible" in line]) == 1
    assert f"{path}: the affine is not invertible" in err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_singular_affine_fails_its_case_and_the_batch_goes_on(tmp_path, capsys):
    cts = tmp_path / "cts"
    cts.mkdir()
    _write_singular(cts / "A_0000.nii.gz", _tiny_ct())
    write_nifti(cts / "B_0000.nii.gz", _tiny_ct(), np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "pred"
    status = main(["predict", "--input", str(cts), "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    assert f"{cts / 'A_0000.nii.gz'}: the affine is not invertible" in captured.err + captured.out
    assert (out / "B.nii.gz").is_file() and not (out / "A.nii.gz").exists()
