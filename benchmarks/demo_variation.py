"""Does the phantom randomisation of the demo weights help on real CT? Stage 1 with and without.

Two stage-1 models with the same settings (``benchmarks/demo_weights.py``): one trained on the
varied phantoms (the shipped model), one on the same phantoms without the randomisation
(``--no-variation``). Both run alone (stage 1, its largest component; no stage 2) on the real
samples and on the two synthetic test sets (varied and plain). Writes
``benchmarks/records/demo_variation.md`` (every figure from this run) and prints it::

    python benchmarks/demo_variation.py \\
        --varied runs/demo-weights/stage1/last.pt \\
        --control runs/demo-weights-control/stage1/last.pt \\
        --test runs/demo-weights/test --test-plain runs/demo-weights-control/test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)
import numpy as np  # noqa: E402

from deeptree.demo import demo_checkpoints  # noqa: E402
from deeptree.files import atomic_write  # noqa: E402
from deeptree.io import list_cases, read_nifti  # noqa: E402
from deeptree.locations import samples_dir  # noqa: E402
from deeptree.real_ct import score_against_label, segment_volume  # noqa: E402
from deeptree.tree_summary import describe_tree  # noqa: E402
from deeptree.resample import checkpoint_spacing, real_ct_spacing  # noqa: E402
from deeptree.stage1.predict import load_stage1_model  # noqa: E402


def _synthetic(model, root: Path) -> dict:
    rows = []
    # phantoms have the training anatomy's size: the training spacing
    spacing = checkpoint_spacing(model.meta)
    for case in list_cases(root):
        seg = segment_volume(read_nifti(case.image), model, None, name=case.id, spacing=spacing)
        rows.append(score_against_label(seg.mask, read_nifti(case.label).array, seg.spacing,
                                        seg.affine)["metrics"])
    return {k: float(np.mean([r[k] for r in rows])) for k in ("BD", "TLD", "precision", "DSC")}


def measure(checkpoint: Path, tests: dict[str, Path], real_spacing) -> dict:
    """Stage-1 figures of one checkpoint: synthetic test sets, and totalseg_chest and cip_ct64
    at ``real_spacing`` (mm; the same for both models)."""
    model = load_stage1_model(checkpoint, "cpu")
    out = {name: _synthetic(model, root) for name, root in tests.items()}
    chest = read_nifti(samples_dir() / "totalseg_chest" / "ct.nii.gz")
    seg = segment_volume(chest, model, None, name="totalseg_chest", spacing=real_spacing)
    out["totalseg_chest"] = describe_tree(seg.stage1_mask, seg.spacing, seg.affine)
    out["totalseg_chest"]["largest"] = describe_tree(seg.mask, seg.spacing, seg.affine)
    cip = read_nifti(samples_dir() / "cip_ct64" / "ct.nii.gz")
    label = read_nifti(samples_dir() / "cip_ct64" / "airway.nii.gz")
    seg = segment_volume(cip, model, None, name="cip_ct64", spacing=real_spacing)
    out["cip_ct64"] = score_against_label(seg.mask, label.array, seg.spacing, seg.affine, "atm22")
    return out


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (for the committed report)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _pct(v) -> str:
    return f"{100 * v:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--varied", required=True, type=Path)
    parser.add_argument("--control", required=True, type=Path)
    parser.add_argument("--test", required=True, type=Path, help="the varied test cohort")
    parser.add_argument("--test-plain", type=Path, help="a test cohort without randomisation")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "records" / "demo_variation.md"
    )
    parser.add_argument(
        "--real-spacing-from", type=Path, default=None,
        help="checkpoint whose real-CT voxel size (training spacing / anatomical scale) both "
        "models run the real samples at (default: the shipped stage1.pt)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    source = args.real_spacing_from or demo_checkpoints()[0]
    real_spacing = real_ct_spacing(load_stage1_model(source, "cpu").meta, str(source))
    tests = {"varied test": args.test}
    if args.test_plain:
        tests["plain test"] = args.test_plain
    start = time.perf_counter()
    figures = {name: measure(path, tests, real_spacing) for name, path in
               (("randomised", args.varied), ("control", args.control))}
    lines = [
        "# Demo weights: stage 1 with and without the phantom randomisation",
        "",
        f"Written by `python benchmarks/demo_variation.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({time.perf_counter() - start:.0f} s); "
        f"models `{args.varied}` and `{args.control}` (same settings, cohort seed and iterations; "
        "only `deeptree.phantom.varied` differs). Stage 1 alone, its largest component; the real "
        f"samples at {real_spacing[0]:g} mm (from `{_shown(source)}`), the phantoms at the training "
        "voxel size.",
        "",
        "| model | " + " | ".join(f"{t}: TLD / BD / precision" for t in tests)
        + " | totalseg: trachea found | components (stage 1) | volume mL | generations"
        " | cip_ct64 TLD / BD / precision |",
        "|---|" + "---|" * (len(tests) + 5),
    ]
    for name, f in figures.items():
        synth = " | ".join(
            f"{_pct(f[t]['TLD'])} / {_pct(f[t]['BD'])} / {_pct(f[t]['precision'])}" for t in tests
        )
        chest, cip = f["totalseg_chest"], f["cip_ct64"]["metrics"]
        lines.append(
            f"| {name} | {synth} | {'yes' if chest['largest']['trachea_found'] else 'no'} | "
            f"{chest['components']} | {chest['largest']['volume_ml']:.1f} | "
            f"{chest['largest']['generations_reached']} | {_pct(cip['TLD'])} / {_pct(cip['BD'])} "
            f"/ {_pct(cip['precision'])} |"
        )
    text = "\n".join(lines) + "\n"
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
