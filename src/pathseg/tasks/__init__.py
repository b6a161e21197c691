"""Transfer and evaluation: fine-tuning, probing, (re-)evaluation and sliding-window inference.

Kept light on import (no torch): the command configs live in :mod:`pathseg.tasks.config`.
"""
