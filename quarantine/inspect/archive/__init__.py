"""The archive reader seam: safe streaming readers for wheels and sdists (zip, tar)."""
