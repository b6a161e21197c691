"""Synthetic H&E-like images with known ground truth (regions, nuclei, slides); see ``docs/synth.md``.

Example:
    >>> from pathseg.synth import generate_sample
    >>> s = generate_sample(seed=0, index=0, size=128)
    >>> s.image.shape, s.mask.shape
    ((128, 128, 3), (128, 128))
"""

from pathseg.synth.classes import TISSUE_CLASSES, NucleusSpec, TissueClass, class_names
from pathseg.synth.render import SynthSample, class_fractions, generate_sample, make_rng, random_layout, render

__all__ = [
    "TISSUE_CLASSES",
    "NucleusSpec",
    "SynthSample",
    "TissueClass",
    "class_fractions",
    "class_names",
    "generate_sample",
    "make_rng",
    "random_layout",
    "render",
    "synth_command",
]


def __getattr__(name: str) -> object:
    if name == "synth_command":
        from pathseg.synth.command import synth_command

        return synth_command
    raise AttributeError(name)
