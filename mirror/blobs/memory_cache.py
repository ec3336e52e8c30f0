"""Small blobs kept in memory: most wheels and every metadata file are small, and a
read from memory is far cheaper than a thread hop per request. Blobs are immutable
(named by their digest), so nothing here ever needs invalidating."""

from collections import OrderedDict

MAX_BLOB_BYTES = 512 * 1024


class BlobCache:
    def __init__(
        self, max_blob_bytes: int = MAX_BLOB_BYTES, budget_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.max_blob_bytes = max_blob_bytes
        self._budget = budget_bytes
        self._used = 0
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self.hits = 0  # read by the metrics (mirror/http/metrics.py)
        self.misses = 0

    def get(self, sha256: str, *, count_miss: bool = True) -> bytes | None:
        """``count_miss=False``: a caller that passes a miss on to one that asks again."""
        blob = self._blobs.get(sha256)
        if blob is not None:
            self._blobs.move_to_end(sha256)
            self.hits += 1
        elif count_miss:
            self.misses += 1
        return blob

    def put(self, sha256: str, blob: bytes) -> None:
        if len(blob) > self.max_blob_bytes or sha256 in self._blobs:
            return
        self._blobs[sha256] = blob
        self._used += len(blob)
        while self._used > self._budget:
            _, evicted = self._blobs.popitem(last=False)
            self._used -= len(evicted)
