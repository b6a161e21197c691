"""CLI declaration of ``pathseg demo``."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="demo",
        config="pathseg.demo:DemoConfig",
        run="pathseg.demo:demo_command",
        help="end-to-end demo on synthetic H&E data: generate, check, pretrain, export, fine-tune, summarise",
        example="pathseg demo --out runs/demo --overwrite",
    )
]
