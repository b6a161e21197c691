"""Self-supervised pretraining: a registry of methods and one Lightning engine that trains any of them.

A method is a :class:`~pathseg.ssl.api.MethodSpec` registered in :data:`METHODS`: a typed config dataclass of its
hyper-parameters, a view-transform factory, a model factory returning an :class:`~pathseg.ssl.base.SSLMethod`
(an ``nn.Module`` with ``training_loss(batch) -> dict`` and a ``backbone``), and optionally its own dataset factory.
See ``docs/dev/ssl_methods.md``. This module stays light (no torch import); call :func:`load_methods` to register
the built-in methods and the plug-ins (``pathseg/ssl/<package>/register.py``).
"""

from pathseg.ssl.api import METHODS, BuildContext, MethodSpec, load_methods

__all__ = ["METHODS", "BuildContext", "MethodSpec", "load_methods"]
