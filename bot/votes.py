"""Viewer votes for the next model: a window, one vote per viewer, a threshold.

Example::

    votes = VoteBox(window_s=60, threshold=3)
    votes.cast("viewer1", "model_0003_xception", now)   # "opened": the first vote opens it
    votes.cast("viewer1", "model_0000_demo", now + 1)   # "already_voted": the first one counts
    ...
    result = votes.close_if_due(now + 60)               # VoteResult(winner=..., counts=...)

The model with the most votes wins if it has at least `threshold` of them; on
a tie, the one that reached the top count first. Transport-free: the router
casts, and whoever runs the router closes due votes and announces them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Literal

Cast = Literal["opened", "counted", "already_voted"]


@dataclass(frozen=True)
class VoteResult:
    """A closed vote: votes per model (most first), the winner if it met the threshold."""

    counts: tuple[tuple[str, int], ...]
    winner: str | None
    threshold: int

    @property
    def total(self) -> int:
        """Votes cast."""
        return sum(count for _, count in self.counts)


class VoteBox:
    """One vote at a time, opened by its first ballot and closed `window_s` later."""

    def __init__(self, *, window_s: float, threshold: int) -> None:
        self.window_s = window_s
        self.threshold = threshold
        self.closes_at: float | None = None
        # user -> choice, in the order the votes came in (ties go to the earlier one).
        self._ballots: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        """Whether a vote is running."""
        return self.closes_at is not None

    def cast(self, user: str, choice: str, now: float) -> Cast:
        """Count `user`'s vote for `choice`; the first vote opens the window."""
        opened = False
        if self.closes_at is None:
            self.closes_at = now + self.window_s
            opened = True
        if user in self._ballots:
            return "already_voted"
        self._ballots[user] = choice
        return "opened" if opened else "counted"

    def tally(self) -> tuple[tuple[str, int], ...]:
        """The running vote's votes per choice, most first (empty when no vote runs)."""
        counts = collections.Counter(self._ballots.values())
        return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def close_if_due(self, now: float) -> VoteResult | None:
        """Close the vote if its window is over; its result, else None."""
        if self.closes_at is None or now < self.closes_at:
            return None
        ballots = list(self._ballots.values())
        self.closes_at = None
        self._ballots = {}
        counts = collections.Counter(ballots)
        top = max(counts.values(), default=0)
        winner = None
        if top >= self.threshold:
            running: collections.Counter[str] = collections.Counter()
            for choice in ballots:
                running[choice] += 1
                if running[choice] == top:
                    winner = choice
                    break
        ordered = tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        return VoteResult(counts=ordered, winner=winner, threshold=self.threshold)
