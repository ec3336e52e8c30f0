"""PEP 740 provenance: offline verification and publisher continuity, and the shipped trust root."""
