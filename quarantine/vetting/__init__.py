"""Vetting held files: the order they are taken in, the checks, promotion, the watcher."""
