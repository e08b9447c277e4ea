"""monitor: a self-hosted, stream-processing news monitor."""

__version__ = "0.1.0"
