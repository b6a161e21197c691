"""Whole-slide inference: ``predict``."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="predict",
        config="pathseg.inference.config:PredictConfig",
        run="pathseg.inference.run:predict_command",
        help="segment whole slides with a trained model (pyramidal TIFF, QuPath GeoJSON, overlay, areas)",
        example="pathseg predict slides/ --model runs/ft_glas --out preds [--mpp 0.5] [--slide-mpp 0.25]",
    ),
]
