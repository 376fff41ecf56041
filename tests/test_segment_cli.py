"""``deeptree segment CT OUT``: both stages on one CT, the same as ``predict --two-stage``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeptree.cli import main
from deeptree.config import NetworkConfig, TrainConfig
from deeptree.io import read_nifti, write_nifti


@pytest.fixture(scope="module")
def case_and_checkpoint(tmp_path_factory):
    from deeptree.checkpoints import save_checkpoint
    from deeptree.networks import stage1_network
    from deeptree.phantom import generate_case
    from deeptree.train import make_optimizer

    tmp = tmp_path_factory.mktemp("segment")
    case = generate_case("smoke", 3)
    ct = write_nifti(tmp / "images" / "PHANTOM_003_0000.nii.gz", case.ct, case.affine)
    torch.manual_seed(0)
    model = stage1_network(NetworkConfig(filters=(2, 4, 8, 16), patch_size=(32, 32, 32)), "plain")
    cfg = TrainConfig(iterations=1)
    meta = {"stage": 1, "variant": "plain", "filters": [2, 4, 8, 16], "patch_size": [32, 32, 32],
            "overlap": 0.25}
    checkpoint = save_checkpoint(tmp / "s1.pt", model, make_optimizer(model, cfg), 1, cfg, meta)
    return case, ct, checkpoint


def test_segment_writes_the_two_stage_mask_on_the_input_grid(case_and_checkpoint, tmp_path):
    case, ct, checkpoint = case_and_checkpoint
    common = ["--checkpoint", str(checkpoint), "--gapfill", "straight", "--device", "cpu"]
    assert main(["segment", str(ct), str(tmp_path / "seg.nii.gz"), *common]) == 0
    assert main(["predict", "--two-stage", "--input", str(ct), "--out",
                 str(tmp_path / "pred.nii.gz"), *common]) == 0
    seg, pred = read_nifti(tmp_path / "seg.nii.gz"), read_nifti(tmp_path / "pred.nii.gz")
    assert seg.array.shape == case.ct.shape and np.allclose(seg.affine, case.affine)
    assert np.array_equal(seg.array, pred.array)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["{dir}", "out.nii.gz", "--gapfill", "straight"], "segment takes one CT"),
        (["{ct}", "out.png", "--gapfill", "straight"], "must be a .nii.gz"),
        (["{ct}", "out.nii.gz"], "give --stage2-checkpoint (or --gapfill"),
    ],
)
def test_segment_refuses_bad_arguments_in_one_line(case_and_checkpoint, tmp_path, capsys, args,
                                                   problem):
    _, ct, checkpoint = case_and_checkpoint
    argv = [a.format(dir=ct.parent, ct=ct) for a in args]
    out = tmp_path / argv[1]
    argv[1] = str(out)
    assert main(["segment", *argv, "--checkpoint", str(checkpoint), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deeptree segment: error:") and problem in err[0]
    assert not out.exists()
