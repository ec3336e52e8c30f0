"""The index pages: PEP 503 HTML, PEP 691 JSON and the JSON API, from the ledger's records."""
