"""The ledger seam: the interface in ``interface``, one module per backend."""
