"""The vetting side of Lazaretto: policy, decisions, the ledger of file states.

Nothing here imports the serving side (``mirror``), starlette or aiohttp; what it needs
from the outside world it declares as protocols (see ``quarantine.source``).
"""
