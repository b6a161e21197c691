"""Whole-slide images: one reader over OpenSlide, tiffslide and plain images; tissue detection; pyramid writing."""

from pathseg.slides.mpp import Mpp, read_mpp_csv
from pathseg.slides.reader import Slide, open_slide
from pathseg.slides.write import pyramid_shapes, write_pyramidal_tiff

__all__ = ["Mpp", "Slide", "open_slide", "pyramid_shapes", "read_mpp_csv", "write_pyramidal_tiff"]
