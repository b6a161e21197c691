"""Transfer and evaluation commands: ``finetune``, ``probe``, ``evaluate``."""

from pathseg.cli.command import Command

COMMANDS = [
    Command(
        name="finetune",
        config="pathseg.tasks.config:FinetuneConfig",
        run="pathseg.tasks.finetune:finetune_command",
        help="fine-tune an encoder for segmentation or classification, then test it",
        example="pathseg finetune --task segmentation --data runs/glas --encoder random --decoder unet "
        "--label-fraction 0.25 --test-split testA --out runs/ft_random",
        nested_help=("trainer.max_steps", "trainer.max_epochs", "optim.lr", "trainer.batch_size"),
    ),
    Command(
        name="probe",
        config="pathseg.tasks.config:ProbeConfig",
        run="pathseg.tasks.probe:probe_command",
        help="linear or kNN probe of a frozen encoder on image labels",
        example="pathseg probe --kind knn --data runs/kather --encoder encoder.safetensors --out runs/probe",
    ),
    Command(
        name="evaluate",
        config="pathseg.tasks.config:EvaluateConfig",
        run="pathseg.tasks.evaluation:evaluate_command",
        help="re-evaluate a fine-tuned run on a split (writes RUN/eval_<split>.json)",
        example="pathseg evaluate --run runs/ft_random --data runs/glas --split testA",
        writes_into=("run",),
    ),
]
