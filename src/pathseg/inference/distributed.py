"""Many slides on several devices and nodes through Lightning's predict loop (``trainer.devices`` / ``num_nodes``).

Lightning starts one process per device (DDP; gloo on CPU, NCCL on GPUs; under SLURM or torchrun it joins the
processes already started). Each rank builds a data loader of its own share of the sorted slides (rank ``r`` of
``W`` takes slides ``r, r + W, ...``), and every predict step is one whole slide through the same code as a single
process (:func:`~pathseg.inference.run.predict_path`) on the rank's device. Slides are independent: the only
collective is the gathering of the outcomes at the end, so that every rank returns (and rank 0 writes into
``OUT/summary.json``) the outcomes of all slides; ``summary_rank<r>.json`` keeps each rank's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from pathseg.inference.config import PredictConfig
from pathseg.inference.model import LoadedModel
from pathseg.inference.run import BandCallback, SlideOutcome, _Run, predict_path, slide_ids, write_summary


class SlidePredictor(L.LightningModule):
    """Predict steps = slides of this rank (the network is not a submodule: Lightning neither wraps nor moves it).

    Args:
        cfg: The predict settings.
        on_band: Progress callback.
        report: Called with each slide's outcome.
        model: An already loaded model (default: load ``cfg.model`` on each rank).
    """

    def __init__(self, cfg: PredictConfig, on_band: BandCallback | None,
                 report: Callable[[SlideOutcome], None] | None, model: LoadedModel | None) -> None:
        super().__init__()
        self.cfg, self.on_band, self.report, self.loaded = cfg, on_band, report, model
        self.paths, self.ids = slide_ids(cfg)
        self.outcomes: list[SlideOutcome] = []
        self.everything: list[SlideOutcome] = []
        self.run: _Run | None = None

    def predict_dataloader(self) -> DataLoader[int]:
        """This rank's slide indices, one per step."""
        mine = list(range(len(self.paths)))[self.global_rank :: self.trainer.world_size]
        return DataLoader(mine, batch_size=None, shuffle=False, num_workers=0)  # type: ignore[arg-type]

    def on_predict_start(self) -> None:
        """Load the model on this rank's device."""
        self.run = _Run(self.cfg, self.on_band, self.loaded, ranks=(self.global_rank, self.trainer.world_size),
                        device=self.device)

    def predict_step(self, batch: Any, batch_idx: int) -> None:
        """One slide."""
        assert self.run is not None
        path = self.paths[int(batch)]
        self.outcomes.append(predict_path(self.run, path, self.ids[str(path.resolve())], self.report))

    def on_predict_end(self) -> None:
        """Write this rank's summary, gather every rank's outcomes; rank 0 writes ``summary.json``."""
        assert self.run is not None
        write_summary(self.cfg, self.run, self.outcomes)
        mine = [asdict(o) for o in self.outcomes]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        rows = sorted((o for part in gathered for o in part), key=lambda o: o["slide_id"])
        self.everything = [SlideOutcome(**o) for o in rows]
        if self.global_rank == 0:
            write_summary(self.cfg, self.run, self.everything, name="summary.json")


def predict_distributed(cfg: PredictConfig, on_band: BandCallback | None = None,
                        report: Callable[[SlideOutcome], None] | None = None,
                        model: LoadedModel | None = None) -> list[SlideOutcome]:
    """:func:`~pathseg.inference.run.predict_slides` over ``trainer.devices`` x ``trainer.num_nodes`` processes;
    returns the outcomes of all slides (on every rank)."""
    import warnings

    from pathseg.train.config import TrainerConfig
    from pathseg.train.factory import build_trainer

    warnings.filterwarnings("ignore", message=".*predict returned None.*")  # predict steps write files
    t = cfg.trainer
    accelerator = "cpu" if t.accelerator == "auto" and cfg.device == "cpu" else t.accelerator
    trainer = build_trainer(
        TrainerConfig(accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes,
                      strategy="ddp" if t.strategy == "auto" else t.strategy, progress_bar=False),
        loggers=False, use_distributed_sampler=False, inference_mode=True)
    module = SlidePredictor(cfg, on_band, report, model)
    trainer.predict(module, return_predictions=False)
    return module.everything
