"""Read side: an order looked up by its number, and orders and refunds as the API shows them."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.orders.catalogue import Product
from chalicelib.orders.model import PAID_STATUSES, Change, Order, OrderItem, Refund, RefundKind, RefundStatus

from .errors import OrderNotFound
from .ports import OrderRepository

_CENT = Decimal("0.01")


def find_order(orders: OrderRepository, out_trade_no: str) -> Order:
    """The stored order; ``OrderNotFound`` also for a number no order could have (never sent to the table)."""
    try:
        params.check_out_trade_no(out_trade_no)
    except OrderError:
        raise OrderNotFound(f"no order {out_trade_no[:64]!r}") from None
    order = orders.get(out_trade_no)
    if order is None:
        raise OrderNotFound(f"no order {out_trade_no!r}")
    return order


def order_view(order: Order) -> dict[str, Any]:
    """``GET /orders/{out_trade_no}``'s body: amounts as decimal strings, optional fields only when known."""
    view: dict[str, Any] = {
        "out_trade_no": order.out_trade_no,
        "status": str(order.status),
        "total_amount": amount_text(order.total_amount),
        "currency": order.currency,
        "updated_at": order.updated_at,
    }
    if order.trade_no:
        view["trade_no"] = order.trade_no
    if order.refund_fee is not None:
        view["refund_fee"] = amount_text(order.refund_fee)
    if order.closed_reason is not None:
        view["closed_reason"] = str(order.closed_reason)
    if order.refunds:
        view["refunds"] = [refund_view(order.out_trade_no, r) for r in order.refunds.values()]
    return view


def items_view(items: Iterable[OrderItem]) -> list[dict[str, Any]]:
    """An order's priced lines as the API shows them."""
    return [
        {
            "sku": item.sku,
            "quantity": item.quantity,
            "unit_price": amount_text(item.unit_price),
            "amount": amount_text(item.amount),
        }
        for item in items
    ]


def buyer_order_view(order: Order) -> dict[str, Any]:
    """What a buyer sees of their own order: its status and what they bought, not the merchant's bookkeeping."""
    view: dict[str, Any] = {
        "out_trade_no": order.out_trade_no,
        "status": str(order.status),
        "total_amount": amount_text(order.total_amount),
        "currency": order.currency,
        "subject": order.subject,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }
    if order.items:
        view["items"] = items_view(order.items)
    if order.trade_no:
        view["trade_no"] = order.trade_no
    if order.refund_fee is not None:
        view["refund_fee"] = amount_text(order.refund_fee)
    return view


def merchant_order_view(order: Order) -> dict[str, Any]:
    """The full order for the merchant's backend and operators: refunds, buyer, items, who created it."""
    view = order_view(order)
    view["subject"] = order.subject
    view["created_at"] = order.created_at
    view.setdefault("refunds", [])
    if order.body is not None:
        view["body"] = order.body
    if order.buyer is not None:
        view["buyer"] = order.buyer
    if order.items:
        view["items"] = items_view(order.items)
    if order.created_by is not None:
        view["created_by"] = order.created_by
    if order.channel is not None:
        view["channel"] = order.channel
    if order.pay_by is not None:
        view["pay_by"] = order.pay_by
    view["history"] = [change_view(c) for c in order.history]
    view["money"] = money_history(order)
    if order.parked is not None:
        view["parked"] = order.parked  # the reconciler set it aside: why
    return view


def money_history(order: Order) -> list[dict[str, str]]:
    """Every movement of money on the order, oldest first, keyed by Alipay's numbers (``trade_no``, ``out_request_no``).

    Read from what the order's own writes recorded (its history and its refunds, each written in the one conditional
    write that made the change): the capture, each refund asked and each refund Alipay confirmed (with the running
    total after it), a refund Alipay refused, and money captured after the order closed together with its return.
    """
    entries: list[dict[str, str]] = []
    seen: set[str] = set()
    captured = False
    for change in order.history:
        number = change.out_request_no
        refund = order.refunds.get(number) if number is not None else None
        if refund is not None and number is not None and refund.kind is RefundKind.RETURN:
            kind = "returned" if number in seen else "captured_after_close"
            seen.add(number)
            amount = refund.amount
        elif refund is not None and number is not None:
            kind, amount = "refund_confirmed", refund.amount
        elif not captured and change.status in PAID_STATUSES:
            kind, amount, captured = "captured", order.total_amount, True
        else:
            continue
        entry = {"at": change.at, "kind": kind, "amount": amount_text(amount), "applied_by": change.applied_by}
        if order.trade_no is not None:
            entry["trade_no"] = order.trade_no
        if number is not None:
            entry["out_request_no"] = number
        if kind == "refund_confirmed" and change.refund_fee is not None:
            entry["refund_fee"] = amount_text(change.refund_fee)
        entries.append(entry)
    for refund in order.refunds.values():
        if refund.kind is RefundKind.REFUND:
            asked = {"at": refund.requested_at, "kind": "refund_requested", "amount": amount_text(refund.amount)}
            entries.append({**asked, "out_request_no": refund.out_request_no})
            if refund.status is RefundStatus.FAILED:
                entries.append({**asked, "kind": "refund_refused", "out_request_no": refund.out_request_no})
    # Stable: a request sorts before its confirmation made in the same millisecond.
    order_of = {"captured": 0, "captured_after_close": 0, "refund_requested": 1, "refund_refused": 2}
    return sorted(entries, key=lambda e: (e["at"], order_of.get(e["kind"], 3)))


def change_view(change: Change) -> dict[str, str]:
    """One applied change: when, to what, and which path applied it."""
    view = {"at": change.at, "status": str(change.status), "applied_by": change.applied_by}
    if change.notify_id is not None:
        view["notify_id"] = change.notify_id
    if change.refund_fee is not None:
        view["refund_fee"] = amount_text(change.refund_fee)
    if change.out_request_no is not None:
        view["out_request_no"] = change.out_request_no
    return view


def product_view(product: Product) -> dict[str, Any]:
    view: dict[str, Any] = {
        "sku": product.sku,
        "subject": product.subject,
        "prices": {currency: amount_text(price) for currency, price in sorted(product.prices.items())},
        "updated_at": product.updated_at,
    }
    if product.body is not None:
        view["body"] = product.body
    if product.updated_by is not None:
        view["updated_by"] = product.updated_by
    return view


def refund_view(out_trade_no: str, refund: Refund) -> dict[str, str]:
    """One refund as the API shows it; the same answer for every repeat of its ``out_request_no``."""
    view = {
        "out_trade_no": out_trade_no,
        "out_request_no": refund.out_request_no,
        "refund_amount": amount_text(refund.amount),
        "status": str(refund.status),
    }
    if refund.refund_fee is not None:
        view["refund_fee"] = amount_text(refund.refund_fee)
    if refund.reason:
        view["reason"] = refund.reason
    if refund.requested_by:
        view["requested_by"] = refund.requested_by
    if refund.kind is not RefundKind.REFUND:
        view["kind"] = str(refund.kind)  # "return": money captured after the order closed, given back automatically
    return view


def amount_text(value: Decimal) -> str:
    """An amount as the API writes it: two places, fixed-point."""
    # DynamoDB hands 12.30 back as 12.3, and str(Decimal) may say 1E+2.
    return format(value.quantize(_CENT), "f")
