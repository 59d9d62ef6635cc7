"""The order domain: statuses, transitions as data, the decision an update makes, and the events; pure."""

from __future__ import annotations

from .events import SOURCE, EventType, OrderEvent, events_for_change
from .model import (
    ALLOWED_PREDECESSORS,
    ALLOWED_TRANSITIONS,
    PAID_STATUSES,
    Apply,
    ClosedReason,
    Decision,
    Duplicate,
    Order,
    OrderStatus,
    PaymentUpdate,
    Quarantine,
    QuarantineReason,
    Refund,
    RefundStatus,
    Stale,
    TransitionPlan,
    decide,
    plan_transition,
)

__all__ = [
    "ALLOWED_PREDECESSORS",
    "ALLOWED_TRANSITIONS",
    "PAID_STATUSES",
    "SOURCE",
    "Apply",
    "ClosedReason",
    "Decision",
    "Duplicate",
    "EventType",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "PaymentUpdate",
    "Quarantine",
    "QuarantineReason",
    "Refund",
    "RefundStatus",
    "Stale",
    "TransitionPlan",
    "decide",
    "events_for_change",
    "plan_transition",
]
