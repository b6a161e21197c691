"""pathseg: label-efficient segmentation for computational pathology."""

__version__ = "0.1.0"
