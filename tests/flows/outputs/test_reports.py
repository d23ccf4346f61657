"""The reports' lanes: every report written exactly once, the card after the real-pairs image it shows."""

from __future__ import annotations

from flows.outputs.reports import LANES, REPORTS, Card, RealPairs


def test_every_report_is_in_one_lane_and_the_card_follows_its_pairs():
    names = [type(r).__name__ for lane in LANES for r in lane]
    assert len(names) == len(set(names)) == len(REPORTS)
    lane = next(lane for lane in LANES if any(isinstance(r, Card) for r in lane))
    kinds = [type(r) for r in lane]
    assert RealPairs in kinds and kinds.index(RealPairs) < kinds.index(Card)
