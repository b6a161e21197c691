"""The tissue classes of the synthetic H&E generator and their appearance parameters.

Sizes are given in micrometres and converted to pixels with the image's µm/px (default 0.5, i.e. 20x).
Stain amounts are optical densities along the haematoxylin (H) and eosin (E) vectors (see
:mod:`pathseg.synth.stain`).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MPP = 0.5


@dataclass(frozen=True)
class NucleusSpec:
    """How the nuclei of one tissue class look.

    Args:
        semi_major_um: Range of the semi-major axis in µm.
        aspect: Range of the minor/major axis ratio (1 = round).
        density: Target nuclei per 1000 µm² of region area (fewer where they cannot be packed without overlap).
        h_od: Range of the nuclear haematoxylin OD (per nucleus).
        boundary_jitter: Relative amplitude of the boundary irregularity (low harmonics of the angle).
        chromatin: Relative amplitude of the intranuclear texture.
        align: Orient nuclei along the local fibre direction (stroma) instead of at random.
    """

    semi_major_um: tuple[float, float]
    aspect: tuple[float, float]
    density: float
    h_od: tuple[float, float]
    boundary_jitter: float = 0.08
    chromatin: float = 0.25
    align: bool = False


@dataclass(frozen=True)
class TissueClass:
    """One tissue class: label index, display colour, background stain amounts and nuclei.

    Args:
        index: Mask value.
        name: Class name.
        color: Overlay / palette colour.
        h_od: Mean haematoxylin OD of the non-nuclear tissue.
        e_od: Mean eosin OD of the non-nuclear tissue.
        nuclei: Nucleus appearance, or ``None`` for no nuclear instances.
    """

    index: int
    name: str
    color: tuple[int, int, int]
    h_od: float
    e_od: float
    nuclei: NucleusSpec | None


BACKGROUND, TUMOUR, STROMA, LYMPHOCYTES, NECROSIS = 0, 1, 2, 3, 4

TISSUE_CLASSES: tuple[TissueClass, ...] = (
    TissueClass(BACKGROUND, "background", (255, 255, 255), 0.006, 0.012, None),
    TissueClass(
        TUMOUR, "tumour", (220, 40, 40), 0.2, 0.24,
        NucleusSpec(semi_major_um=(4.5, 6.5), aspect=(0.65, 0.95), density=6.0, h_od=(0.8, 1.15),
                    boundary_jitter=0.06, chromatin=0.35),
    ),
    TissueClass(
        STROMA, "stroma", (60, 170, 75), 0.04, 0.32,
        NucleusSpec(semi_major_um=(5.0, 8.0), aspect=(0.22, 0.38), density=1.0, h_od=(0.75, 1.05),
                    boundary_jitter=0.05, chromatin=0.2, align=True),
    ),
    TissueClass(
        LYMPHOCYTES, "lymphocytes", (60, 60, 200), 0.14, 0.16,
        NucleusSpec(semi_major_um=(3.0, 4.0), aspect=(0.82, 1.0), density=14.0, h_od=(1.2, 1.5),
                    boundary_jitter=0.04, chromatin=0.12),
    ),
    TissueClass(NECROSIS, "necrosis", (240, 200, 40), 0.06, 0.2, None),
)

#: Debris fragments in necrosis (karyorrhexis): radius range in µm and count per 1000 µm². Not instances.
DEBRIS_RADIUS_UM = (0.5, 1.8)
DEBRIS_DENSITY = 10.0

#: Default sampling weights of the classes in a segmentation image's region layout.
DEFAULT_WEIGHTS = (0.12, 0.3, 0.25, 0.18, 0.15)


def class_names() -> list[str]:
    """Names ordered by index."""
    return [c.name for c in TISSUE_CLASSES]


def nucleus_radius_px(spec: NucleusSpec, mpp: float = DEFAULT_MPP) -> tuple[float, float]:
    """Semi-major axis range of a class's nuclei in pixels at ``mpp``."""
    return spec.semi_major_um[0] / mpp, spec.semi_major_um[1] / mpp
