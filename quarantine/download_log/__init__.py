"""The download log seam: who was served which file; ``interface``, one module per backend."""
