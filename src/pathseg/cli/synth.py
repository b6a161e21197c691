"""CLI declaration of ``pathseg synth``."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="synth",
        config="pathseg.synth.config:SynthConfig",
        run="pathseg.synth.command:synth_command",
        help="generate synthetic H&E-like images or slides with known ground truth",
        example="pathseg synth --kind segmentation --out runs/synth --n 100 --size 256 --seed 0",
    )
]
