"""``pathseg wsss``: weakly supervised segmentation from patch-level labels (MLPS)."""

from __future__ import annotations

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="wsss",
        config="pathseg.wsss.config:WsssConfig",
        run="pathseg.wsss.pipeline:wsss_command",
        help="weakly supervised segmentation from patch labels (MLPS: stage 1, pseudo masks, stage 2)",
        example="pathseg wsss --data data/glas_patches --out runs/wsss_glas stage1.epochs=2 stage2.epochs=2",
    )
]
