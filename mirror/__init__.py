"""The serving side of Lazaretto: the Simple API, file routes, the upstream client, blobs."""

__version__ = "0.1.0"
