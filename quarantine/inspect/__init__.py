"""Content inspection: archive readers, the rules over their members, the worker pool."""
