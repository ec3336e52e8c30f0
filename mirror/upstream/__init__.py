"""The upstream index, treated as hostile input: the client, the page parser, the URL guard."""
