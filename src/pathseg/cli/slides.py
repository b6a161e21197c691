"""Slide commands: ``slides info``, ``tile`` and ``tiles export``."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="slides info",
        config="pathseg.slides.commands:InfoConfig",
        run="pathseg.slides.commands:info_command",
        help="show a slide's dimensions, levels, µm/px (and its source), vendor and objective power",
        example="pathseg slides info slide.svs [--slide-mpp 0.25]",
    ),
    Command(
        name="tile",
        config="pathseg.slides.commands:TileConfig",
        run="pathseg.slides.commands:tile_command",
        help="tile slides at a target µm/px into a resumable tile index with tissue masks",
        example="pathseg tile slides/ --out tiles --mpp 0.5 --size 256 --min-tissue 0.5 [--slide-mpp 0.25]",
    ),
    Command(
        name="tiles export",
        config="pathseg.data.tiles:ExportConfig",
        run="pathseg.data.tiles:export_command",
        help="export the tiles of a tile index as PNGs in the canonical unlabeled layout",
        example="pathseg tiles export tiles/tiles.csv --out data/tiles",
    ),
]
