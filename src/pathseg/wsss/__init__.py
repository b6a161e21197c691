"""Weakly supervised semantic segmentation from patch-level labels: MLPS (Han et al., MedIA 2022).

Stage 1 (:mod:`~pathseg.wsss.classifier`, :mod:`~pathseg.wsss.pda`, :mod:`~pathseg.wsss.stage1`), pseudo masks
(:mod:`~pathseg.wsss.gradcam`, :mod:`~pathseg.wsss.pseudo_masks`, :mod:`~pathseg.wsss.generate`), stage 2
(:mod:`~pathseg.wsss.stage2`, :mod:`~pathseg.wsss.gate`) and the resumable pipeline
(:mod:`~pathseg.wsss.pipeline`, ``pathseg wsss``). See ``docs/methods/mlps.md``.
"""
