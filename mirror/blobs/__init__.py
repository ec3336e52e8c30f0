"""The blob store seam: the interface in ``interface``, one module per implementation."""
