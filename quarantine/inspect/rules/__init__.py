"""The rules a content inspection fires, one family per module, and their catalog."""
