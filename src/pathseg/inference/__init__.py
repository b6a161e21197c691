"""Whole-slide inference with bounded memory: ``pathseg predict`` and :func:`predict_slides` (see docs/inference.md)."""

from pathseg.inference.config import PredictConfig

__all__ = ["PredictConfig", "predict_slides"]


def __getattr__(name: str) -> object:
    if name == "predict_slides":  # lazy: keeps ``import pathseg.inference`` free of torch
        from pathseg.inference.run import predict_slides

        return predict_slides
    raise AttributeError(name)
