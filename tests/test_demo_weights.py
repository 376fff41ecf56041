"""The shipped demo weights (deeptree.demo), their use by ``predict``/``segment`` without
``--checkpoint``, the varied phantoms they are trained on, and the real-CT summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deeptree import demo
from deeptree.cli import main
from deeptree.io import InputError, read_nifti, write_nifti
from deeptree.locations import samples_dir


def test_the_demo_weights_are_package_data_and_load_as_both_stages():
    from deeptree.stage1.predict import load_stage1_model
    from deeptree.stage2.predict import load_stage2_model

    stage1, stage2 = demo.demo_checkpoints()
    assert stage1.parent == demo.weights_dir() and stage1.parent.name == "weights"
    assert stage1.stat().st_size + stage2.stat().st_size < 25e6
    s1, s2 = load_stage1_model(stage1), load_stage2_model(stage2)
    assert s1.meta["stage"] == 1 and s2.meta["stage"] == 2
    assert s1.meta["spacing"] == s2.meta["spacing"] and len(s1.meta["spacing"]) == 3
    assert "phantoms" in s1.meta["demo"]["trained_on"]
    assert (demo.weights_dir() / demo.CARD_NAME).is_file()
    line = demo.describe()
    assert line.startswith("no --checkpoint: using the demo weights")
    assert "x".join(f"{v:g}" for v in s1.meta["spacing"]) + " mm" in line


def test_missing_demo_weights_are_named_with_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "weights_dir", lambda: tmp_path)
    with pytest.raises(
        InputError, match=r"stage1\.pt: the demo weights are missing.*make demo-weights"
    ):
        demo.demo_checkpoints()


def test_export_keeps_the_weights_and_drops_the_optimiser(tmp_path):
    import torch

    from deeptree.checkpoints import load_checkpoint, save_checkpoint
    from deeptree.config import NetworkConfig, TrainConfig
    from deeptree.networks import stage1_network
    from deeptree.train import make_optimizer

    model = stage1_network(NetworkConfig(filters=(2, 4, 8, 16), patch_size=(32, 32, 32)), "plain")
    cfg = TrainConfig(iterations=1)
    meta = {"stage": 1, "variant": "plain", "filters": [2, 4, 8, 16], "patch_size": [32] * 3}
    full = save_checkpoint(tmp_path / "last.pt", model, make_optimizer(model, cfg), 1, cfg, meta)
    slim = demo.export_weights(full, tmp_path / "w.pt", {"trained_on": "2 phantoms"})
    state = load_checkpoint(slim)
    assert "optimizer" not in state and "rng" not in state
    assert state["meta"]["demo"] == {"trained_on": "2 phantoms"}
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value)


def _real_crop(tmp_path):
    """A 48^3 crop of the real totalseg_chest CT around its trachea (1.5 mm)."""
    chest = read_nifti(samples_dir() / "totalseg_chest" / "ct.nii.gz")
    start = np.array([*(np.asarray(chest.array.shape[:2]) // 2 - 24), chest.array.shape[2] - 48])
    crop = chest.array[start[0] : start[0] + 48, start[1] : start[1] + 48, start[2] :]
    affine = chest.affine.copy()
    affine[:3, 3] = chest.affine[:3, :3] @ start + chest.affine[:3, 3]
    return write_nifti(tmp_path / "crop.nii.gz", crop, affine)


def _tiny_anisotropic_ct(tmp_path):
    """A hand-built 40 x 40 x 30 CT at 0.7 x 0.7 x 1.0 mm: air tube in soft tissue, lung around."""
    ii, jj, _ = np.meshgrid(np.arange(40), np.arange(40), np.arange(30), indexing="ij")
    ct = np.full((40, 40, 30), -850, np.int16)
    ct[(ii - 20) ** 2 + (jj - 20) ** 2 <= 36] = 40
    ct[(ii - 20) ** 2 + (jj - 20) ** 2 <= 16] = -1000
    return write_nifti(tmp_path / "tiny.nii.gz", ct, np.diag([0.7, 0.7, 1.0, 1.0]))


@pytest.mark.parametrize("make", [_tiny_anisotropic_ct, _real_crop])
def test_segment_and_predict_use_the_demo_weights_without_checkpoint(tmp_path, capsys, make):
    ct = make(tmp_path)
    source = read_nifti(ct)
    assert main(["segment", str(ct), str(tmp_path / "seg.nii.gz"), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "no --checkpoint: using the demo weights" in said and "stage 2" in said
    assert main(["predict", str(ct), str(tmp_path / "s1.nii.gz"), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "no --checkpoint: using the demo weights" in said and "stage 2" not in said
    for name in ("seg.nii.gz", "s1.nii.gz"):
        out = read_nifti(tmp_path / name)
        assert out.array.shape == source.array.shape and np.allclose(out.affine, source.affine)
        assert set(np.unique(out.array)) <= {0, 1}


def test_predict_takes_ct_out_or_input_out_not_both(tmp_path, capsys):
    ct = _tiny_anisotropic_ct(tmp_path)
    argv = ["predict", str(ct), str(tmp_path / "a.nii.gz"), "--out", str(tmp_path / "b.nii.gz")]
    assert main(argv) == 2
    assert "either as CT OUT or as --input/--out" in capsys.readouterr().err
    assert main(["predict", str(ct)]) == 2
    assert "both the CT and the output file" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", "x.pt"]) == 2
    assert "give CT OUT, or --input and --out" in capsys.readouterr().err


# --- varied phantoms ------------------------------------------------------------------------


def test_varied_profile_draws_within_the_ranges_and_keeps_the_rest():
    from deeptree.phantom.varied import Variation, varied_profile
    from deeptree.phantom_config import phantom_profile

    base = phantom_profile("cpu")
    var = Variation()
    drawn = [varied_profile("cpu", np.random.default_rng(s)) for s in range(20)]
    assert varied_profile("cpu", np.random.default_rng(3)) == drawn[3]  # seeded
    for prof in drawn:
        assert prof.name == "cpu-varied" and prof.spacing_mm == base.spacing_mm
        assert prof.n_plugs == base.n_plugs and prof.min_lumen_mm == base.min_lumen_mm
        assert var.scale[0] <= prof.scale <= var.scale[1]
        assert var.psf_fwhm_mm[0] <= prof.ct.psf_fwhm_mm <= var.psf_fwhm_mm[1]
        assert var.noise_hu[0] <= prof.ct.noise_hu <= var.noise_hu[1]
        offset = prof.ct.lumen_hu - base.ct.lumen_hu
        assert var.hu_offset[0] <= offset <= var.hu_offset[1]
        assert prof.ct.wall_hu - base.ct.wall_hu == pytest.approx(offset)
    assert len({p.scale for p in drawn}) == 20
    assert phantom_profile("cpu") == base  # the profile itself is untouched
    with pytest.raises(InputError, match="Variation.scale"):
        varied_profile("cpu", np.random.default_rng(0), Variation(scale=(0.6, 0.5)))


def test_varied_cohort_resumes_and_refuses_other_settings(tmp_path):
    from deeptree.phantom.varied import VARIED_NAME, Variation, generate_varied_cohort

    ids = generate_varied_cohort(tmp_path / "c", "smoke", 2, seed=5, progress=False)
    record = json.loads((tmp_path / "c" / VARIED_NAME).read_text())
    assert ids == ["PHANTOM_000", "PHANTOM_001"] and sorted(record["cases"]) == ids
    assert record["cases"]["PHANTOM_000"]["scale"] != record["cases"]["PHANTOM_001"]["scale"]
    image = tmp_path / "c" / "imagesTr" / "PHANTOM_000_0000.nii.gz"
    before = image.stat().st_mtime_ns
    generate_varied_cohort(tmp_path / "c", "smoke", 2, seed=5, progress=False)
    assert image.stat().st_mtime_ns == before  # complete cases are skipped
    with pytest.raises(InputError, match="another seed"):
        generate_varied_cohort(tmp_path / "c", "smoke", 2, seed=6, progress=False)
    with pytest.raises(InputError, match="another variation"):
        generate_varied_cohort(
            tmp_path / "c", "smoke", 2, seed=5, variation=Variation(noise_hu=(1, 2)),
            progress=False,
        )  # fmt: skip


# --- real-CT summaries ----------------------------------------------------------------------


def test_describe_tree_on_the_real_atm_tree_and_an_empty_mask():
    from deeptree.tree_summary import describe_tree, tree_bar

    tree = read_nifti(samples_dir() / "atm_001" / "airway.nii.gz")
    found = describe_tree(tree.array, tree.spacing, tree.affine)
    assert found["trachea_found"] and found["components"] >= 1
    assert found["generations_reached"] >= 5 and found["branches_per_generation"][1] == 2
    assert 10 < found["volume_ml"] < 200
    # a real tree: 1 trachea, 2 main bronchi, 4 branches of generation 2 (right upper lobe,
    # bronchus intermedius, left upper and lower lobe: the middle and right lower lobe bronchi
    # branch off the intermedius one generation down), so 5 lobar bronchi, and at least 10
    # branches of generation 3; its 600 mL lungs are not in the label: no leak. The label
    # meets every criterion of the bar but the segmental count it stops short of, if any.
    counts = found["branches_per_generation"]
    assert (counts[0], counts[1], counts[2]) == (1, 2, 4) and counts[3] >= 10
    assert found["lobar_bronchi"] == 5
    assert found["bar_met"] and all(found["bar"].values())
    # a mask stopped at the bronchus intermedius has 3 lobar bronchi: the bar's lobar criterion
    # alone fails
    assert not tree_bar(found | {"lobar_bronchi": 3})["bar"]["lobar"]
    empty = describe_tree(np.zeros((8, 8, 8), np.uint8), (1, 1, 1))
    assert empty["components"] == 0 and not empty["trachea_found"]
    assert empty["generations_reached"] == -1 and empty["volume_ml"] == 0
    assert not empty["bar_met"] and empty["bar"]["no leak"] and empty["lobar_bronchi"] == 0


def _tube(shape, start, end, radius):
    """Voxels (1 mm grid) within ``radius`` of the segment start-end."""
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1).astype(float)
    a, b = np.asarray(start, float), np.asarray(end, float)
    t = np.clip(((grid - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(grid - (a + t[..., None] * (b - a)), axis=-1) <= radius


def test_a_tilted_root_branch_is_not_called_a_trachea():
    """The parse's root is the cranial-most branch, whatever it is: a mask holding a single
    main bronchus (wide, long, but 60 degrees off the long axis) must not count as a trachea;
    the same tube upright does; the real labelled trees' tracheas are upright."""
    from deeptree.tree_summary import TRACHEA_MAX_TILT_DEG, describe_tree

    shape = (90, 40, 90)
    upright = describe_tree(_tube(shape, (45, 20, 10), (45, 20, 80), 7), (1, 1, 1))
    assert upright["trachea_found"] and upright["trachea_tilt_deg"] < 5
    lying = describe_tree(_tube(shape, (10, 20, 30), (70, 20, 65), 7), (1, 1, 1))
    assert not lying["trachea_found"] and 50 < lying["trachea_tilt_deg"] < 70
    assert lying["trachea_length_mm"] > 30 and lying["trachea_diameter_mm"] > 8
    for name in ("atm_001", "cip_ct64"):
        label = read_nifti(samples_dir() / name / "airway.nii.gz")
        found = describe_tree(label.array, label.spacing, label.affine)
        assert found["trachea_found"] and found["trachea_tilt_deg"] < TRACHEA_MAX_TILT_DEG


def _binary_tree(generations: int) -> np.ndarray:
    """A planar binary airway tree (voxels; read at 2 mm): a 20-voxel trachea along +k (the
    cranial end up), each branch splitting in two down to ``generations``."""
    shape = (124, 12, 100)
    mask = np.zeros(shape, bool)
    ends = [((62, 6, 97), (62, 6, 76))]
    mask |= _tube(shape, *ends[0], 3.2)
    spread, drop, radius = 26.0, 20, 2.6
    for _ in range(generations):
        children = []
        for _, (i, j, k) in ends:
            for side in (-1, 1):
                end = (i + side * spread, j, k - drop)
                mask |= _tube(shape, (i, j, k), end, radius)
                children.append(((i, j, k), end))
        ends, spread, radius = children, spread / 2, max(radius - 0.4, 1.5)
    return mask


def test_branches_per_generation_of_hand_built_trees_and_the_bar():
    """A Y (trachea and two main bronchi) and a binary tree to generation 3 (1, 2, 4, 8
    branches): the counts per generation, and the bar criterion by criterion."""
    from deeptree.tree_summary import LEAK_VOLUME_ML, describe_tree, tree_bar

    y = describe_tree(_binary_tree(1), (2, 2, 2))
    assert y["branches_per_generation"] == {0: 1, 1: 2} and y["components"] == 1
    assert y["trachea_found"] and y["bar"]["generation 1"] and not y["bar"]["lobar"]
    assert y["lobar_bronchi"] == 0
    tree = describe_tree(_binary_tree(3), (2, 2, 2))
    assert tree["branches_per_generation"] == {0: 1, 1: 2, 2: 4, 3: 8}
    # lobar: the two generation-2 branches on the left (i small: the voxel axes read as RAS),
    # one on the right, and the two children of the right one taken as the intermedius
    assert tree["lobar_bronchi"] == 5
    assert tree["bar"] == {"trachea": True, "generation 1": True, "lobar": True,
                           "generation 3": False, "no leak": True}  # fmt: skip
    assert not tree["bar_met"]
    assert tree_bar(tree, {1: 2, 3: 8})["bar_met"]  # the counts, no more
    assert not tree_bar(tree, {1: 2, 3: 9})["bar_met"]
    assert not tree_bar(tree, {1: 2, 3: 8}, min_lobar=6)["bar_met"]
    # read back from JSON (string keys), and a leak
    as_json = json.loads(json.dumps(tree))
    assert tree_bar(as_json, {1: 2, 3: 8})["bar_met"]
    leaked = as_json | {"volume_ml": LEAK_VOLUME_ML}
    assert tree_bar(leaked, {1: 2, 3: 8})["bar"]["no leak"] is False


def test_the_bronchus_intermedius_is_on_the_patient_s_right_in_any_voxel_order():
    """atm_001 stored LPS and the same mask in RAS voxel order: the same bronchus intermedius
    (the child of the short, wide right main bronchus with the larger subtree) and 5 lobar
    bronchi; with left and right swapped in the affine a left-lung branch is taken for it."""
    import warnings

    import nibabel as nib

    from deeptree.tree import parse_tree
    from deeptree.tree_summary import _world_centroid, bronchus_intermedius, lobar_bronchi

    label = read_nifti(samples_dir() / "atm_001" / "airway.nii.gz")
    image = nib.Nifti1Image(label.array.astype(np.uint8), label.affine)
    canonical = nib.as_closest_canonical(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lps = parse_tree(label.array > 0, label.spacing, affine=label.affine)
        ras = parse_tree(np.asarray(canonical.dataobj) > 0, label.spacing, affine=canonical.affine)
    found = {}
    for name, tree, affine in (("lps", lps, label.affine), ("ras", ras, canonical.affine)):
        intermedius = tree.branches[bronchus_intermedius(tree, affine)]
        right_main = tree.branches[intermedius.parent]
        left_main = next(b for b in tree.branches.values()
                         if b.generation == 1 and b.id != right_main.id)  # fmt: skip
        assert right_main.length_mm < left_main.length_mm  # the right one is short ...
        assert right_main.diameter_mm > left_main.diameter_mm  # ... and wide
        assert intermedius.generation == 2 and len(intermedius.children) >= 2
        assert lobar_bronchi(tree, affine) == 5
        found[name] = (intermedius.length_mm, _world_centroid(tree, intermedius.id, affine))
    # the same branch (the thinning is not exactly the same in another voxel order)
    assert found["lps"][0] == pytest.approx(found["ras"][0], rel=0.1)
    assert np.linalg.norm(found["lps"][1] - found["ras"][1]) < 5.0  # mm
    mirrored = np.diag([-1.0, 1.0, 1.0, 1.0]) @ np.asarray(label.affine, float)
    wrong = lps.branches[bronchus_intermedius(lps, mirrored)]
    assert lps.branches[wrong.parent].length_mm > 50  # the long left main bronchus


def test_lobar_bronchi_of_a_mask_stopped_at_the_intermedius():
    """The binary tree to generation 2 (trachea, 2 main bronchi, 4 of generation 2): the
    intermedius has no child, so 3 lobar bronchi; to generation 3, 5."""
    from deeptree.tree_summary import describe_tree

    assert describe_tree(_binary_tree(2), (2, 2, 2))["lobar_bronchi"] == 3
    assert describe_tree(_binary_tree(3), (2, 2, 2))["lobar_bronchi"] == 5


def test_score_against_label_is_perfect_on_the_label_itself():
    from deeptree.real_ct import score_against_label

    label = read_nifti(samples_dir() / "cip_ct64" / "airway.nii.gz")
    scored = score_against_label(label.array, label.array, label.spacing, label.affine, "atm22")
    assert scored["metrics"]["TLD"] == pytest.approx(1.0)
    assert scored["protocol"] == "atm22"
    assert [row["generation"] for row in scored["by_generation"]][:2] == [0, 1]


def test_crop_volume_keeps_world_coordinates():
    from deeptree.io import Volume
    from deeptree.real_ct import crop_volume

    array = np.arange(20 * 30 * 40, dtype=np.int16).reshape(20, 30, 40)
    affine = np.diag([2.0, 1.0, 0.5, 1.0])
    affine[:3, 3] = (-10, 5, 7)
    crop = crop_volume(Volume(array, affine, (2.0, 1.0, 0.5)), 8.0, centre=(10, 15, 20))
    assert crop.array.shape == (4, 8, 16) and crop.spacing == (2.0, 1.0, 0.5)
    # the crop's first voxel is the same world point as the source voxel it was cut from
    assert crop.array[0, 0, 0] == array[8, 11, 12]
    assert np.allclose(crop.affine @ [0, 0, 0, 1], affine @ [8, 11, 12, 1])
    edge = crop_volume(Volume(array, affine, (2.0, 1.0, 0.5)), 1000.0)
    assert edge.array.shape == array.shape


def test_model_card_and_verdict_come_from_the_figures():
    from deeptree.real_ct import transfer_verdict

    card = demo.model_card()
    assert set(card["synthetic"]["mean"]) >= {"BD", "TLD", "precision", "DSC"}
    lines = transfer_verdict(card["real"], card.get("scale"))
    assert lines[0].startswith("totalseg_chest") and "cip_ct64" in lines[1]
    found = card["real"]["totalseg_chest"]["final"]["trachea_found"]
    assert ("trachea found" in lines[0]) == found
    text = (demo.weights_dir() / demo.CARD_NAME).read_text()
    assert all(line in text for line in lines)  # the card says what the figures say


def test_cohort_progress_follows_the_notebook_runner(tmp_path, monkeypatch, capsys):
    from deeptree.phantom import generate_cohort
    from deeptree.progress import ENV

    monkeypatch.setenv(ENV, "0")
    generate_cohort(tmp_path / "quiet", "smoke", n=1, seed=0)
    assert "phantoms (smoke)" not in capsys.readouterr().err
    monkeypatch.setenv(ENV, "1")
    generate_cohort(tmp_path / "shown", "smoke", n=1, seed=0)
    assert "phantoms (smoke)" in capsys.readouterr().err


def test_the_card_of_a_model_trained_on_synthesised_adult_chests(tmp_path):
    """The card says which generator made the training CTs and that real CT runs at the
    training voxel size when the phantoms have an adult's size."""
    from deeptree.model_card import write_card
    from deeptree.phantom.synth import FAMILIES

    card = json.loads(json.dumps(demo.model_card()))
    card["generator"] = "synth"
    card["settings"].update(
        spacing_mm=1.0, tree_profile="standard", families=list(FAMILIES[:2]),
        real_trees=["atm_001/airway.nii.gz"], real_cases=3,
    )  # fmt: skip
    card["scale"].update(chosen_mm=1.0, anatomical_scale=1.0, rows=card["scale"]["rows"][:1])
    card["scale"]["rows"][0]["spacing_mm"] = 1.0
    text = write_card(card, tmp_path / "MODEL_CARD.md").read_text()
    assert "3 around real trees (atm_001/airway.nii.gz)" in text
    assert "(`deeptree.phantom.synth`), families: tissue_hu, kernel;" in text
    assert "a real CT runs at the 1 mm of training (anatomical scale 1.000" in text
    assert "## Voxel size for real CT\n" in text and "chests smaller than an adult" not in text
    card["settings"]["families"] = []
    assert "families: none (control)" in write_card(card, tmp_path / "c.md").read_text()


def test_the_card_reports_convergence_and_the_transfer_checks_when_it_has_them(tmp_path):
    """A card with each stage's flattening rule and the transfer step's report shows both,
    every figure read from the card; a card without them (the shipped one) shows neither."""
    from deeptree.model_card import write_card
    from deeptree.transfer import format_checks, transfer_checks

    card = json.loads(json.dumps(demo.model_card()))
    plain = write_card(card, tmp_path / "plain.md").read_text()
    assert "## Transfer checks" not in plain and "last quarter" not in plain

    card["generator"] = "synth"
    card["settings"].update(tree_profile="standard", families=["noise"], real_trees=[],
                            real_cases=0)  # fmt: skip
    card["training"]["stage1"]["convergence"] = {
        "score": "TLD", "checks": 40, "best before last quarter": 71.25, "end": 71.9,
        "gain": 0.65, "flat": "yes",
    }  # fmt: skip
    card["training"]["stage2"]["convergence"] = {
        "score": "gap_dice", "checks": 10, "best before last quarter": 50.0, "end": 58.0,
        "gain": 8.0, "flat": "no",
    }  # fmt: skip
    chest = {"trachea_found": True, "components": 1, "volume_ml": 48.0, "generations_reached": 3,
             "branches_per_generation": {"0": 1, "1": 2, "2": 4, "3": 11}, "lobar_bronchi": 5,
             "bar": {"trachea": True}, "bar_met": True, "seconds": 30.0}  # fmt: skip
    metrics = {"TLD": 0.7, "BD": 0.6, "precision": 0.9, "DSC": 0.8}
    card["transfer"] = {
        "complete": True, "model_spacing_mm": [1.0, 1.0, 1.0], "seconds": 600.0,
        "bar": {"min_branches": {"1": 2, "3": 10}, "min_lobar": 5, "leak_ml": 150.0},
        "totalseg_chest": {"as is": chest},
        "cip_ct64": {"as is": {"metrics": metrics, "trachea_found": True, "seconds": 9.0}},
        "simulated": {"beyond the synthesised draws": {
            "settings": {"seeds": [3000]}, "cases": [{**metrics, "trachea_found": True}],
            "mean": metrics}},
    }  # fmt: skip
    card["transfer_checks"] = transfer_checks(card["transfer"], "beyond the synthesised draws")
    text = write_card(card, tmp_path / "MODEL_CARD.md").read_text()
    assert "Stage 1 validation TLD (40 checks): 71.2% best before the last quarter, 71.9% at " \
           "the end (+0.7 points; flat: it had stopped gaining)." in text  # fmt: skip
    assert "(+8.0 points; still gaining: longer training would help)" in text
    assert "## Transfer checks (issue 33)" in text and "in 10.0 min" in text
    assert format_checks(card["transfer_checks"]).rstrip("\n") in text
    assert "| cip_ct64 against its label: TLD and precision | TLD 70.0%, precision 90.0% | " \
           "at least 85.0% and 85.0% | no |" in text  # fmt: skip
    assert "learned from synthetic CT only" in text and "a demonstration" not in text
    assert "not run when this card was written" in text
    card["ablation"] = "benchmarks/records/synth_ablation.md"
    assert (
        "the ablation in `benchmarks/records/synth_ablation.md`"
        in write_card(card, tmp_path / "with_ablation.md").read_text()
    )
