"""``deeptree info``: versions, devices and the run profiles."""

from __future__ import annotations

from deeptree.config import get_config
from deeptree.report import environment_report

NAME = "info"
HELP = "print versions, the compute device and the run profiles"


def add_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="profile whose settings to print")


def run(args) -> int:

    for key, value in environment_report().items():
        print(f"{key:>14}: {value}")
    print(f"\nprofile {args.profile}:\n{get_config(args.profile)}")
    return 0
