"""Instance segmentation of glands and nuclei (``pathseg finetune --task instance --model NAME``).

* :mod:`.config` — :class:`InstanceSection` (light, no torch) and the per-kind defaults.
* :mod:`.targets`, :mod:`.dataset` — targets from instance maps; :class:`InstanceDataset` over the canonical layout.
* :mod:`.proposal_free` (``hover``, ``contour``) with :mod:`.postprocess` (watershed); :mod:`.maskrcnn`.
* :mod:`.factory` — build / save / rebuild models; :mod:`.module` — :class:`InstanceModule` (Lightning);
  :mod:`.train` — loaders and trainer; :mod:`.evaluation` — metrics, TIFF maps, contour pictures.

See ``docs/instance.md``.
"""
