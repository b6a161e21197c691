"""CLI command ``pathseg compare``: every method x task x label fraction x seed in one resumable run."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="compare",
        config="pathseg.compare.config:CompareConfig",
        run="pathseg.compare.runner:compare_command",
        help="pretrain every method once, fine-tune every cell, write results.csv/results.md/plots",
        example="pathseg compare --config configs/compare/glas_cpu_smoke.yaml --out runs/compare",
    ),
]
