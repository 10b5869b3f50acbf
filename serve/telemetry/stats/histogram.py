"""A mergeable latency histogram: fixed log-scale buckets, eight per doubling (each about 9 %
wide), so replicas and time steps add their counts bucket by bucket and a percentile is read
from the sum, never from a list of samples."""

from __future__ import annotations

import math
from collections.abc import Mapping

PER_DOUBLING = 8
LAST = PER_DOUBLING * 22  # 2^22 ms, about 70 minutes: anything longer lands in the last bucket


def bucket(ms: float) -> int:
    """Bucket i holds (2^((i-1)/8), 2^(i/8)] ms; bucket 0 everything up to 1 ms."""
    if ms <= 1:
        return 0
    return min(LAST, math.ceil(PER_DOUBLING * math.log2(ms)))


def bounds(i: int) -> tuple[float, float]:
    upper = 2 ** (i / PER_DOUBLING)
    return (0.0 if i == 0 else 2 ** ((i - 1) / PER_DOUBLING), upper)


def percentile(counts: Mapping[int, float], q: float) -> float | None:
    """The q-quantile (0 < q <= 1, nearest rank) as its bucket's geometric middle: within
    the bucket that holds the exact value."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0.0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            low, high = bounds(i)
            return high if low == 0 else math.sqrt(low * high)
    raise AssertionError("unreachable: the ranks add up to the total")
