"""What one attempt at a month did and cost: the numbers the month state machine
records (``months``) and the pipeline fills in (``pipeline``). Data layer: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class _Client(Protocol):
    """Any provider client: its name and the requests it sent."""

    name: str
    calls: int


@dataclass
class AttemptStats:
    """What one attempt at a month did and cost.

    * ``books_generated``: the month's candidates that are not ``invalid_isbn``
      (distinct books after merging both generators' lists, whichever attempt
      generated them).
    * ``isbns_resolved``: distinct ISBN-13s of the month's resolved candidates.
    * ``invalid_isbns``: candidates named only with a made-up ISBN (bad checksum).
    * ``*_calls``: HTTP requests this attempt sent, each reserved in the ledger.
    * ``generators_reused``: generators not asked because their answer was stored.
    """

    gemini_calls: int = 0
    xai_calls: int = 0
    isbndb_calls: int = 0
    openlibrary_calls: int = 0
    googlebooks_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    books_generated: int = 0
    isbns_resolved: int = 0
    invalid_isbns: int = 0
    unresolved: int = 0
    generators_reused: int = 0
    model: str | None = None
    prompt_version: str | None = None

    @property
    def resolution_rate(self) -> float:
        """isbns_resolved / books_generated * 100 (0 when nothing was generated)."""
        if not self.books_generated:
            return 0.0
        return round(100.0 * self.isbns_resolved / self.books_generated, 2)

    def count(self, client: _Client) -> None:
        """Add the requests ``client`` sent to this attempt's counters."""
        name = f"{client.name}_calls"
        setattr(self, name, getattr(self, name) + client.calls)
