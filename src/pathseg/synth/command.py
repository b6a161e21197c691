"""The ``pathseg synth`` command."""

from __future__ import annotations

from pathseg.synth.config import SynthConfig


def synth_command(cfg: SynthConfig) -> int:
    """Generate a synthetic data set (or slides) as configured; prints one line per split or slide."""
    if cfg.kind == "slide":
        from pathseg.synth.slide import write_synth_slides

        records = write_synth_slides(cfg)
        print(f"ok: wrote {len(records)} slide(s) to {cfg.out}")
        return 0
    if cfg.kind == "nuclei-masks":
        from pathseg.synth.nuclei_masks import MaskParams
        from pathseg.synth.nuclei_masks_io import write_nuclei_masks

        masks = write_nuclei_masks(cfg.out, cfg.n, cfg.image_size, cfg.grid, MaskParams(mpp=cfg.mpp, layout=cfg.layout),
                                   cfg.render, cfg.seed, cfg.overwrite)
        print(f"ok: wrote {masks['tiles']} mask tiles ({masks['nuclei']} nuclei) to {cfg.out}")
        return 0
    from pathseg.synth.dataset import write_synth_dataset

    counts = write_synth_dataset(cfg)
    parts = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"ok: wrote {cfg.kind} data set to {cfg.out} ({parts})")
    return 0
