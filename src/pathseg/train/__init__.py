"""The training engine shared by every pipeline (pretraining, fine-tuning, weak supervision, instance tasks).

One place owns what all pipelines need:

- :mod:`pathseg.train.config` — :class:`TrainerConfig` (devices, precision, strategy, nodes, accumulation,
  logging, progress) and :class:`ScheduleConfig`; light, no torch import.
- :mod:`pathseg.train.schedules` — learning-rate factors (warm-up + cosine, poly, step) and
  :func:`build_scheduler` (also ``ReduceLROnPlateau``).
- :mod:`pathseg.train.factory` — :func:`build_trainer`, :func:`parse_devices`.
- :mod:`pathseg.train.best` — :class:`BestWeights`, best-weights selection on a validation metric.
- :mod:`pathseg.train.weights` — deterministic safetensors files and weights-only resume checkpoints.
- :mod:`pathseg.train.lifecycle` — :func:`run_lifecycle`: ``run.json`` ends ``completed``, ``failed`` or
  ``interrupted``.
- :mod:`pathseg.train.knn` — weighted kNN accuracy (monitor and probe).

Import the submodules directly (``from pathseg.train.factory import build_trainer``); this package module stays
light so that configs can import :mod:`pathseg.train.config` without torch.
"""
