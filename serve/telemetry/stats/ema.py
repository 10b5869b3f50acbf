"""The exponential moving average the original router kept (alpha 0.1), in a form that
merges: a batch of samples is (n, c, first) with c = sum of alpha * (1 - alpha)^(n - i) * x_i,
so applying it to a running value e gives (1 - alpha)^n * e + c. Batches chain in time order
(per flush, per replica, per bucket) and a window folds its buckets' batches the same way."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.1


@dataclass
class EmaBatch:
    n: int = 0
    c: float = 0.0
    first: float = 0.0  # the first sample: where a sequence with no earlier value starts

    def add(self, x: float) -> None:
        if self.n == 0:
            self.first = x
        self.c = (1 - ALPHA) * self.c + ALPHA * x
        self.n += 1

    def then(self, later: EmaBatch) -> None:
        """Append a batch whose samples came after this one's."""
        if later.n == 0:
            return
        if self.n == 0:
            self.first = later.first
        self.c = (1 - ALPHA) ** later.n * self.c + later.c
        self.n += later.n

    def value(self) -> float | None:
        """The EMA after every sample, starting at the first one (as the original did)."""
        if self.n == 0:
            return None
        return (1 - ALPHA) ** self.n * self.first + self.c
