"""URL as a pretraining method of the engine (:class:`~pathseg.ssl.base.SSLMethod`), one stage per run.

Stage 1 trains the encoder and the global head; stage 2 starts from a stage-1 encoder, freezes it (BatchNorm
statistics included unless ``parity``) and trains the decoder and the dense head; ``joint`` trains all. The run's
``encoder.safetensors`` (written by the engine from :meth:`URLMethod.export_state`) holds the encoder under timm
keys and, after stage 2 or joint, the U-Net decoder as ``decoder.*``: ``pathseg finetune --encoder`` loads both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from pathseg.errors import DataError, PathsegError
from pathseg.ssl.base import SSLMethod
from pathseg.ssl.url.batched import BatchedViews
from pathseg.ssl.url.config import Stage, URLConfig, ViewConfig
from pathseg.ssl.url.model import URLNet
from pathseg.ssl.url.objective import URLObjective

ENCODER_FILE = "encoder.safetensors"  # what the engine writes into every run directory


def effective_views(cfg: URLConfig) -> ViewConfig:
    """The view settings, with the method's ``parity`` switching on the views' parity too."""
    return dataclasses.replace(cfg.views, parity=cfg.views.parity or cfg.parity)


def stage1_weights(cfg: URLConfig) -> Path | None:
    """The file stage 2 starts from: ``encoder_file``, or ``encoder.safetensors`` of the ``stage1_checkpoint`` run
    (a file given as ``stage1_checkpoint`` is used as it is)."""
    if not (cfg.encoder_file or cfg.stage1_checkpoint):
        return None
    path = Path(cfg.encoder_file or cfg.stage1_checkpoint)
    if path.is_dir():
        path = path / ENCODER_FILE
        if not path.is_file():
            raise DataError(f"no {ENCODER_FILE} in this run directory (has the stage-1 run finished?)", path.parent)
    if not path.is_file():
        raise DataError("stage-1 weights not found", path)
    return path


class URLMethod(SSLMethod):
    """URL's network and the losses of one stage.

    Args:
        backbone: timm name of the encoder.
        stage: ``"1"``, ``"2"`` or ``"joint"``.
        freeze_bn: Stage 2: keep the frozen encoder's BatchNorm statistics (``False`` = the original's drift).
        global_dim: Image-level embedding size.
        dense_dim: Dense embedding channels.
        dense_hidden: Channels of the dense head's first convolution.
        dense_stride: Resolution of the dense embedding (H / stride).
        temperature: τ of the three tasks.
        pixel_negatives: ``prototype`` or ``pixel``.
        superpixel_negatives: ``both_views`` or ``other_view``.
        weights: Weights of the image-, superpixel- and pixel-level terms.
        decoder: ``smp`` or ``paper`` (see :class:`~pathseg.ssl.url.model.URLNet`).
        views: Renderer of raw batches (``views.batched``: the data workers return canvases and random draws,
            rendered here on the training device); ``None``: batches arrive rendered.
    """

    def __init__(
        self,
        backbone: str,
        stage: Stage,
        freeze_bn: bool = True,
        global_dim: int = 128,
        dense_dim: int = 32,
        dense_hidden: int = 64,
        dense_stride: int = 2,
        temperature: float = 0.3,
        pixel_negatives: Literal["prototype", "pixel"] = "prototype",
        superpixel_negatives: Literal["both_views", "other_view"] = "both_views",
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        decoder: Literal["smp", "paper"] = "smp",
        views: BatchedViews | None = None,
    ) -> None:
        super().__init__()
        self.views = views
        self.timm_name = backbone
        self.stage = stage
        self.net = URLNet(backbone, global_dim, dense_dim, dense_hidden, dense_stride, decoder)
        self.backbone = self.net.encoder.model  # the same timm module: 'pathseg export' reads method.backbone.*
        self.objective = URLObjective(stage, temperature, pixel_negatives, superpixel_negatives, weights)
        if stage == "2":
            self.net.freeze_encoder(bn_eval=freeze_bn)

    def load_encoder(self, path: str | os.PathLike[str]) -> None:
        """Load a complete encoder from a weights file (the factory's job; stage 2 starts from stage 1's).

        Raises:
            PathsegError: The file does not hold every tensor of the encoder.
        """
        self._load_encoder(Path(path))

    def _load_encoder(self, path: Path) -> None:
        from pathseg.models import load_weights
        from pathseg.models.weights import DEFAULT_PREFIXES

        report = load_weights(self.backbone, path, strip_prefixes=("method.", *DEFAULT_PREFIXES), allow_partial=True)
        if report.missing or report.mismatched:
            raise PathsegError(
                f"the file does not hold a complete {self.timm_name} encoder ({len(report.missing)} tensors "
                f"missing, {len(report.mismatched)} of another shape, e.g. {(report.missing + report.mismatched)[:2]})",
                path,
            )

    def train(self, mode: bool = True) -> URLMethod:
        """Like ``nn.Module.train``, but a frozen encoder keeps BatchNorm in eval mode.

        ``backbone`` is the encoder registered a second time, so the net's own ``train`` must run last.
        """
        super().train(mode)
        self.net.train(mode)
        return self

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The stage's losses: ``loss`` and its terms ``loss_img``, ``loss_sp``, ``loss_px``.

        A raw batch (``canvas`` key) is rendered first, on the batch's device.
        """
        if "canvas" in batch:
            if self.views is None:
                raise PathsegError("url got raw view parameters but has no view renderer (views.batched)")
            batch = self.views(batch)
        return self.objective(self.net, batch)

    def export_state(self) -> dict[str, Tensor]:
        """Encoder (timm keys) and, after stage 2 or joint, the U-Net decoder (``decoder.*``)."""
        return self.net.export_state(with_decoder=self.stage != "1")
