"""``/files/``: verified bytes only, fetched once per digest, sent from the blob store."""
