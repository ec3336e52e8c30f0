"""Findings of Python sources already scanned, keyed by their bytes: each is parsed once.

The wheels of one release (fifty of numpy's, one per platform and Python) carry the same
``.py`` members byte for byte. The rules over a source depend only on its bytes, the
name it is reported under, whether it is an sdist's ``setup.py`` and the parse limit, so
all four make the key: a hit is exactly what scanning again would give, and the cache
cannot change a verdict. A package module's import-time facts (``scan_module``) depend on
its bytes, its name, its dotted module name, the limit and whether it was parsed as a
relay, all in their key. Bounded by entries, per kind; the oldest used go first.

With a :class:`~quarantine.inspect.member_store.MemberStore` behind it (in a worker
process), what this process does not hold is looked up there, where every worker process
puts what it scanned: the same keys, with the rules version added.
"""

import hashlib
from collections import OrderedDict

from quarantine.evidence import Finding
from quarantine.inspect import scan_codec
from quarantine.inspect.member_store import MemberStore, entry_key
from quarantine.inspect.rules.content import scan_python
from quarantine.inspect.rules.import_collect import ImportNote, import_note
from quarantine.inspect.rules.import_source import Scanned, scan_module

MAX_ENTRIES = 20_000  # a few MB: keys, and findings and facts that are mostly empty

_Key = tuple[bytes, str, bool, int]
_ModuleKey = tuple[bytes, str, str, int, bool]


class MemberCache:
    def __init__(self, max_entries: int = MAX_ENTRIES, store: MemberStore | None = None) -> None:
        self._max = max_entries
        self.store = store
        self._found: OrderedDict[_Key, tuple[Finding, ...]] = OrderedDict()
        self._modules: OrderedDict[_ModuleKey, Scanned] = OrderedDict()
        self._notes: OrderedDict[bytes, ImportNote] = OrderedDict()
        self.scanned = 0  # sources given to the rules (not found here)

    def scan(
        self, name: str, data: bytes, *, install_time: bool, max_parse_bytes: int
    ) -> list[Finding]:
        key = (hashlib.sha256(data).digest(), name, install_time, max_parse_bytes)
        found = self._found.get(key)
        if found is not None:
            self._found.move_to_end(key)
            return list(found)
        shared = self._shared_findings(("source", *key))
        if shared is not None:
            fresh = list(shared)
        else:
            self.scanned += 1
            fresh = scan_python(
                name, data, install_time=install_time, max_parse_bytes=max_parse_bytes
            )
            self._share(("source", *key), scan_codec.encode_findings(tuple(fresh)))
        self._found[key] = tuple(fresh)
        if len(self._found) > self._max:
            self._found.popitem(last=False)
        return fresh

    def scan_module(
        self, name: str, data: bytes, module: str, max_parse_bytes: int, parse_all: bool
    ) -> Scanned:
        """A package module's payload findings and import-time facts (see
        :func:`~quarantine.inspect.rules.import_source.scan_module`), once per bytes and name."""
        key = (hashlib.sha256(data).digest(), name, module, max_parse_bytes, parse_all)
        found = self._modules.get(key)
        if found is not None:
            self._modules.move_to_end(key)
            return found
        fresh = self._shared_module(("module", *key))
        if fresh is None:
            self.scanned += 1
            fresh = scan_module(
                name, data, module, max_parse_bytes=max_parse_bytes, parse_all=parse_all
            )
            self._share(("module", *key), scan_codec.encode(fresh))
        self._modules[key] = fresh
        if len(self._modules) > self._max:
            self._modules.popitem(last=False)
        return fresh

    def import_note(self, data: bytes) -> ImportNote:
        """What a source imports by name (see
        :func:`~quarantine.inspect.rules.import_collect.import_note`), once per bytes."""
        key = hashlib.sha256(data).digest()
        found = self._notes.get(key)
        if found is None:
            found = self._shared_note(("note", key))
        if found is None:
            found = import_note(data)
            self._share(("note", key), scan_codec.encode_note(found))
        self._notes[key] = found
        self._notes.move_to_end(key)
        if len(self._notes) > self._max:
            self._notes.popitem(last=False)
        return set(found[0]), found[1]

    def _shared_note(self, key: tuple[object, ...]) -> ImportNote | None:
        text = self._shared(key)
        try:
            return None if text is None else scan_codec.decode_note(text)
        except ValueError:
            return None

    def _shared_findings(self, key: tuple[object, ...]) -> tuple[Finding, ...] | None:
        text = self._shared(key)
        try:
            return None if text is None else scan_codec.decode_findings(text)
        except ValueError:
            return None

    def _shared_module(self, key: tuple[object, ...]) -> Scanned | None:
        text = self._shared(key)
        try:
            return None if text is None else scan_codec.decode(text)
        except ValueError:
            return None

    def _shared(self, key: tuple[object, ...]) -> str | None:
        return None if self.store is None else self.store.get(entry_key(*key))

    def _share(self, key: tuple[object, ...], value: str) -> None:
        if self.store is not None:
            self.store.put(entry_key(*key), value)

    def flush(self) -> None:
        """Write what this process scanned to the shared store (after each inspection)."""
        if self.store is not None:
            self.store.flush()
