"""The reader's running work meter: what reading a file costs that its headers cannot price.

A header says how many values and tensors each section holds, so budget.py prices their entropy
decoding before a byte of them is read, one entropy model (segment) a tensor: what every writer
stores. It cannot say into how many segments a tensor is split (one per slice along any axis):
a segment is a few bytes (a geometric model is 5 to 7, plus its word count), yet each builds a
probability table of up to 8,193 entries and an ANS coder. Work linear in the file's bytes,
then, but at up to 0.6 ms per 15 bytes: a 12 MB file of nothing else takes minutes. Pricing
the most segments the shapes allow would charge a legitimate file some 80 times its models
(the longest axis of every tensor), and pricing every byte as a segment about a minute a
megabyte it never spends.

So the reader counts the segments beyond each tensor's first as it meets them and charges each
`SEGMENT_MACS` against what the work limit leaves once the priced work is taken out
(`ReadingMeter.allowance`): a file that passes its price can still not take longer than
`--max-work` allows, and a file as writers make it is never charged more than its price.
Torch-free, like the rest of format/.
"""

from __future__ import annotations

from dnerv_codec.errors import BudgetError

SEGMENT_MACS = 2 * 10**7
"""One segment read: its model parsed, its table built, its ANS coder set up and run over its
symbols, charged as the MACs the decoder renders in the same time (benchmarks/decode_overhead.py,
the costliest kind, a geometric model over +-4,096 with a ratio not seen before: 0.39 to 0.62 ms
on 2 cores rendering 2.4e10 MACs a second, 1.45e7 MACs at most; rounded up)."""


class ReadingMeter:
    """Counts the segments beyond a tensor's first that a reader decodes, and refuses
    (BudgetError, one line) the first one that takes the total past `allowance` MACs (None: no
    limit, as for the encoder's own files). One meter may follow several chunks of a file, so
    the allowance is the file's."""

    def __init__(self, allowance: int | None = None):
        self.allowance = allowance
        self.segments = 0

    @property
    def spent(self) -> int:
        return self.segments * SEGMENT_MACS

    def segment(self, where: str) -> None:
        """Charge one segment, before its table is built."""
        self.segments += 1
        if self.allowance is not None and self.spent > self.allowance:
            raise BudgetError(
                f"{where}: {self.segments} entropy models beyond one a tensor cost more than "
                f"the work limit leaves after the priced work ({max(0, self.allowance):.3g} "
                f"MACs' worth; each model {SEGMENT_MACS:.3g}); raise it with --max-work")
