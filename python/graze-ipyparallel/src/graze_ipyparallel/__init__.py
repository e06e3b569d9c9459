"""ipyparallel engines (and Dask workers) on a graze cluster of idle office PCs."""

from .launcher import GrazeControllerLauncher, GrazeEngineSetLauncher

__all__ = ["GrazeControllerLauncher", "GrazeEngineSetLauncher"]
__version__ = "0.1.0"
