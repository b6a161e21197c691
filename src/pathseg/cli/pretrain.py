"""CLI commands of self-supervised pretraining: ``pathseg pretrain`` and ``pathseg export``."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="pretrain",
        config="pathseg.ssl.config:PretrainConfig",
        run="pathseg.ssl.engine:pretrain_command",
        help="self-supervised pretraining of a backbone with a registered method",
        example="pathseg pretrain --method mocov2 --data runs/unlabeled --out runs/moco --backbone resnet18 "
        "trainer.max_steps=200",
    ),
    Command(
        name="export",
        config="pathseg.ssl.config:ExportConfig",
        run="pathseg.ssl.engine:export_command",
        help="write the backbone of a pretraining run as encoder.safetensors",
        example="pathseg export runs/moco --out runs/moco_encoder.safetensors",
    ),
]
