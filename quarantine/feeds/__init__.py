"""Malware feeds: OSV records, merged and kept current."""
