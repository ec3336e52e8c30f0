"""Which waiting inspection takes a free worker first: what a client is about to install.

Lanes, most urgent first:

* ``LIKELY``: a file of a project a client asked for, of its newest cooled release, that
  most installs take (its Linux x86_64 or pure-Python wheel, see
  ``quarantine.vetting.queue.install_likelihood``): a resolver waits for it now;
* ``ASKED``: the other files of the projects clients asked for (other platforms, sdists,
  older releases);
* ``BACKGROUND``: the watcher's work.

Within a lane, the vetting queue's order. An inspection done for another one (the previous
release a file is compared with) takes that file's priority.
"""

from dataclasses import dataclass
from enum import IntEnum


class Lane(IntEnum):
    LIKELY = 0
    ASKED = 1
    BACKGROUND = 2


@dataclass(frozen=True, slots=True, order=True)
class Priority:
    lane: Lane = Lane.BACKGROUND
    order: int = 0  # within the lane, lower first (the vetting queue's order)

    @property
    def likely(self) -> bool:
        return self.lane is Lane.LIKELY


BACKGROUND = Priority()  # the default: no client waits for it
