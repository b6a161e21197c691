"""``pathseg compare``: every pretraining method x downstream task x label fraction x seed, in one resumable run.

Modules: :mod:`~pathseg.compare.config` (typed YAML), :mod:`~pathseg.compare.plan` (cells and their keys),
:mod:`~pathseg.compare.runner` (pretrain once, fine-tune every cell, skip finished cells),
:mod:`~pathseg.compare.report` (``results.csv``, ``results.md``, plots).
"""
