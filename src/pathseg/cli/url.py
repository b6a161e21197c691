"""CLI commands of the URL method (``pathseg url ...``)."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="url superpixels",
        config="pathseg.ssl.url.commands:SuperpixelsConfig",
        run="pathseg.ssl.url.commands:superpixels_command",
        help="compute and cache the superpixel maps URL pretraining uses",
        example="pathseg url superpixels runs/glas --splits train superpixels.region_size=32",
    )
]
