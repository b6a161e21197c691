"""UNIT: nucleus-aware pretraining by unpaired mask <-> H&E translation with instance guidance.

Song et al., "Nucleus-aware Self-supervised Pretraining Using Unpaired Image-to-image Translation for
Histopathology Images", IEEE TMI 43(1), 2024. See ``docs/methods/unit.md``. Submodules import torch; this package
(and ``config``) stays light.
"""
