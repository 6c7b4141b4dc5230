"""The detectors this project knows, each declared in one module of this package (see :mod:`.registry`).

An eighth detector is one more module, here or anywhere (config `detector_modules`), plus table rows.
"""

# Each module registers its detectors on import; this order is the order `names()` lists them in.
# isort: off
from . import ssd  # noqa: F401
from . import fssd  # noqa: F401
from . import dssd  # noqa: F401
from . import refinedet  # noqa: F401

# isort: on
from .registry import MODULES_ENV, DetectorSpec, Throughput, get, load_module, names, register, resolve

__all__ = ["DetectorSpec", "MODULES_ENV", "Throughput", "get", "load_module", "names", "register", "resolve"]
