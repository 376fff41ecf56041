"""How a two-stage checkpoint pair transfers to real CT: the transfer checks of issue 33.

Runs :func:`deeptree.transfer.transfer_report` (``totalseg_chest`` and ``cip_ct64`` as they are
and edited: contrast removed, contrast added, noise, 5 mm slices; CTs simulated around the
real atm_001 tree with the demo phantoms' image settings and with settings beyond them) on a
checkpoint pair (default: the shipped demo weights, ``deeptree/weights/``), writes
``benchmarks/records/demo_transfer.json`` and ``.md`` (atomically) and prints the Markdown::

    OMP_NUM_THREADS=1 python benchmarks/demo_transfer.py [--stage1 S1.pt --stage2 S2.pt]
        [--atm-cts 2] [--out benchmarks/records/demo_transfer]

The figures the new demo weights of issue 33 must beat are those of the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)
import torch  # noqa: E402

from _common import cpu_model  # noqa: E402  (benchmarks/_common.py: the script's folder is on sys.path)
from deeptree.demo import demo_checkpoints  # noqa: E402
from deeptree.files import atomic_write  # noqa: E402
from deeptree.transfer import (  # noqa: E402
    TRANSFER_SEED,
    format_transfer,
    simulated_sets,
    transfer_report,
)

DEFAULT_OUT = ROOT / "benchmarks" / "records" / "demo_transfer"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1", type=Path, help="stage-1 checkpoint (default: shipped)")
    parser.add_argument("--stage2", type=Path, help="stage-2 checkpoint (default: shipped)")
    parser.add_argument("--atm-cts", type=int, default=3, help="simulated CTs per setting")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="records, no suffix")
    args = parser.parse_args(argv)
    shipped = demo_checkpoints() if args.stage1 is None or args.stage2 is None else None
    stage1 = args.stage1 or shipped[0]
    stage2 = args.stage2 or shipped[1]

    command = "python benchmarks/demo_transfer.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    machine = {
        "processor": cpu_model(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }

    def write(report: dict) -> str:
        """The records of the report so far (a long run leaves what it measured)."""
        report |= {"command": command.strip(), "machine": machine}
        report["written"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for name in ("stage1", "stage2"):  # paths inside the repository, as a reader has them
            path = Path(report["checkpoints"][name]).resolve()
            if path.is_relative_to(ROOT):
                report["checkpoints"][name] = str(path.relative_to(ROOT))
        done = "" if report["complete"] else " Partial: the run had not finished."
        header = (
            f"# Transfer checks of {report['checkpoints']['stage1']} + "
            f"{report['checkpoints']['stage2']}\n\nWritten by `{report['command']}` on "
            f"{report['written']} ({machine['processor']}, {report['seconds'] / 60:.1f} min)."
            f"{done}\n\n"
        )
        text = header + format_transfer(report)
        out = args.out
        atomic_write(
            out.with_suffix(".json"), lambda t: Path(t).write_text(json.dumps(report, indent=1))
        )
        atomic_write(out.with_suffix(".md"), lambda t: Path(t).write_text(text))
        return text

    def sets():
        return simulated_sets(n=args.atm_cts, seed=TRANSFER_SEED) if args.atm_cts > 0 else {}

    report = transfer_report(stage1, stage2, simulated=sets, on_step=write)
    print(write(report))
    return report


if __name__ == "__main__":
    main()
