"""Typed config of ``pathseg predict`` (no heavy imports here, so ``pathseg --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathseg.errors import ConfigError

Backend = Literal["auto", "openslide", "tiffslide", "image"]


@dataclass
class PredictTrainerConfig:
    """Processes of ``pathseg predict`` (Lightning's predict loop; each rank takes its share of the slides).

    Args:
        accelerator: ``auto``, ``cpu``, ``gpu``.
        devices: Processes per node: a count (``"4"``) or a list of GPUs (``"0,1"``); above 1 (or with several nodes)
            the slides are shared by Lightning's predict loop (DDP; gloo on CPU).
        num_nodes: Machines.
        strategy: ``auto`` (``ddp`` when several processes) or a Lightning strategy name.
    """

    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"


@dataclass
class PredictConfig:
    """Segment whole slides with a trained model, with bounded memory; resumable per slide and tile block.

    Each slide is read at the model's µm/px (recorded when it was trained, or --mpp), only windows on tissue are
    run, overlapping windows are blended with the Gaussian weights of 'pathseg evaluate', and OUT/<slide>/ gets
    classes.tif (pyramidal class map on the slide's pixel grid), annotations.geojson (QuPath), overlay.png and
    areas.csv/areas.json. A killed run continues where it stopped when started again with the same flags.
    Several processes share the slides (rank r of W takes slides r, r+W, ...): trainer.devices=N /
    trainer.num_nodes=M run them through Lightning's predict loop; torchrun or srun without them work too.
    """

    slides: list[str] = field(metadata={"positional": True, "help": "slide files or folders of slides"})
    model: str = field(metadata={"help": "finetune run, its seed_<s> folder, or a model_*.safetensors file"})
    out: str = field(metadata={"help": "output directory (finished slides are skipped, unfinished ones resume)"})
    mpp: float | None = field(default=None, metadata={"help": "µm/px to run at (default: the model's)"})
    tile: int | None = field(default=None, metadata={"help": "window size in pixels at --mpp (default: model's)"})
    overlap: float | None = field(default=None, metadata={"help": "window overlap fraction (default: model's)"})
    batch: int = field(default=8, metadata={"help": "windows per forward pass"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1 ... (ranks use cuda:LOCAL_RANK)"})
    workers: int = field(default=2, metadata={"help": "data-loader processes reading the slide"})
    weights: Literal["best", "last"] = field(default="best", metadata={"help": "which weights of a run"})
    seed: int | None = field(default=None, metadata={"help": "seed folder of a run (default: the first)"})
    slide_mpp: float | None = field(
        default=None, metadata={"help": "µm/px of level 0 for slides whose metadata has none (never overrides it)"})
    backend: Backend = field(default="auto", metadata={"help": "slide reader"})
    tissue_mpp: float = field(default=8.0, metadata={"help": "resolution of the tissue mask in µm/px"})
    min_tissue: float = field(
        default=0.0, metadata={"help": "run windows whose tissue fraction exceeds this (-1: every window)"})
    outside_tissue: Literal["background", "keep"] = field(default="background", metadata={
        "help": "pixels outside the tissue mask: class 0 (background) or the model's prediction (keep; always "
                "kept with --min-tissue -1)"})
    cell: int = field(default=2048, metadata={"help": "width of a tile block in model pixels (memory ~ cell)"})
    probabilities: bool = field(default=False, metadata={"help": "also write probs_<class>.tif (uint8)"})
    objects: str = field(
        default="none", metadata={"help": "object extractor for detections: none, components"})
    simplify: float = field(default=1.0, metadata={"help": "polygon simplification tolerance in pixels at --mpp"})
    min_area_um2: float = field(default=0.0, metadata={"help": "drop polygons smaller than this (µm²)"})
    amp: bool = field(default=True, metadata={"help": "mixed precision (bfloat16/float16 autocast) on CUDA"})
    channels_last: bool = field(default=True, metadata={"help": "channels-last memory (faster on CPU and GPU)"})
    overwrite: bool = field(default=False, metadata={"help": "redo slides that are finished already"})
    trainer: PredictTrainerConfig = field(default_factory=PredictTrainerConfig)

    def validate(self) -> None:
        """Check ranges."""
        if self.mpp is not None and self.mpp <= 0:
            raise ConfigError(f"--mpp must be positive, got {self.mpp}")
        if self.tile is not None and (self.tile < 16 or self.tile % 16):
            raise ConfigError(f"--tile must be a multiple of 16 and at least 16, got {self.tile}")
        if self.overlap is not None and not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"--overlap must be in [0, 1), got {self.overlap}")
        if self.trainer.num_nodes < 1:
            raise ConfigError(f"trainer.num_nodes must be at least 1, got {self.trainer.num_nodes}")
        if self.cell < 16:
            raise ConfigError(f"--cell must be at least 16, got {self.cell}")
        if self.batch < 1 or self.workers < 0:
            raise ConfigError("--batch must be at least 1 and --workers at least 0")
        if self.tissue_mpp <= 0 or self.simplify < 0 or self.min_area_um2 < 0:
            raise ConfigError("--tissue-mpp must be positive, --simplify and --min-area-um2 not negative")
        if self.min_tissue >= 1.0:
            raise ConfigError(f"--min-tissue must be below 1, got {self.min_tissue}")
