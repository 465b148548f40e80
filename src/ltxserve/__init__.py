"""ltxserve: a Runware-compatible server for LTX-2."""

__version__ = "0.1.0"
