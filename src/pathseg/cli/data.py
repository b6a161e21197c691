"""``pathseg data ...`` commands: check, convert, import, split, subset, patchify."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(name="data check", config="pathseg.data.check:CheckConfig", run="pathseg.data.check:check_command",
            help="validate a data set in the canonical layout and print its statistics",
            example="pathseg data check data/glas"),
    Command(name="data convert", config="pathseg.data.convert.base:ConvertConfig",
            run="pathseg.data.convert:convert_command",
            help="convert a public data set release into the canonical layout",
            example="pathseg data convert glas ../shared/data/glas --out data/glas"),
    Command(name="data split", config="pathseg.data.split:SplitConfig", run="pathseg.data.split:split_command",
            help="hold out a validation set as id lists (no images copied)",
            example="pathseg data split data/glas --val 0.1 --seed 0 --from train", writes_into=("root",)),
    Command(name="data subset", config="pathseg.data.split:SubsetConfig", run="pathseg.data.split:subset_command",
            help="write a label-fraction subset of a split as an id list (nested across fractions)",
            example="pathseg data subset data/glas --fraction 0.1 --seed 0 --split train", writes_into=("root",)),
    Command(name="data import", config="pathseg.data.importer:ImportConfig", run="pathseg.data.importer:import_command",
            help="import your own images + masks (or GeoJSON annotations) as a split of a canonical data set",
            example="pathseg data import my_images/ --masks my_masks/ --mapping 0:background,255:gland "
                    "--split train --out data/mine"),
    Command(name="data patchify", config="pathseg.data.patchify:PatchifyConfig",
            run="pathseg.data.patchify:patchify_command",
            help="cut a segmentation data set into patches with image-level (patch) labels",
            example="pathseg data patchify data/glas --size 224 --min-fraction 0.05 --out data/glas_patches"),
]
