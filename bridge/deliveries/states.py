"""A delivery's states and the moves allowed between them; the store writes no other move."""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    RECEIVED = "received"      # committed by a receiver; the relay sends it on
    IGNORED = "ignored"        # nothing to do (an event type or run the bridge does not act on)
    DISPATCHED = "dispatched"  # handed to the broker
    PROCESSING = "processing"  # a worker claimed it
    PROCESSED = "processed"
    BLOCKED = "blocked"        # waits for a person to reconnect the identity it needs
    FAILED = "failed"          # given up on; `bridge deliveries retry --state failed` once the cause is fixed


S = DeliveryState

FINISHED = frozenset({S.PROCESSED, S.IGNORED, S.FAILED})
IN_FLIGHT = frozenset({S.RECEIVED, S.DISPATCHED, S.PROCESSING})  # on its way to a worker, or in one's hands
WATCHED = IN_FLIGHT | {S.BLOCKED, S.FAILED}  # what may need a person: /metrics, the overview's backlog

# to-state -> the states it may be reached from
REACHED_FROM: dict[DeliveryState, frozenset[DeliveryState]] = {
    # sent by the relay (received), again by the sweeper (a message lost with the broker), or on a retry
    S.DISPATCHED: frozenset({S.RECEIVED, S.DISPATCHED, S.PROCESSING, S.BLOCKED, S.FAILED}),
    # a worker's claim: a redelivered message may find it still received, processing or blocked
    S.PROCESSING: frozenset({S.RECEIVED, S.DISPATCHED, S.PROCESSING, S.BLOCKED}),
    # a worker's end; a sweeper may have sent the row again meanwhile (then it is dispatched)
    S.PROCESSED: frozenset({S.PROCESSING, S.DISPATCHED}),
    S.IGNORED: frozenset({S.PROCESSING, S.DISPATCHED}),
    S.BLOCKED: frozenset({S.PROCESSING, S.DISPATCHED}),
    S.FAILED: frozenset({S.PROCESSING, S.DISPATCHED}),
}

# the states a receiver writes a new row in
WRITTEN = frozenset({S.RECEIVED, S.IGNORED})


def may_move(old: DeliveryState, new: DeliveryState) -> bool:
    return old in REACHED_FROM.get(new, frozenset())
