"""Chalice app: routes and event handlers, wiring only (the use cases live in ``chalicelib.services``).

Importing this module is cheap by design: no boto3, no Powertools, no client. Those load on first use.
"""

from __future__ import annotations

from typing import Any

from chalice import Chalice
from chalice.app import CloudWatchEvent, DynamoDBEvent, Rate, SQSEvent

from chalicelib.config import event_sources
from chalicelib.routes.buyer import buyer_api
from chalicelib.routes.consumers import handle_schedule_event, handle_sqs_event, handle_stream_event
from chalicelib.routes.merchant import merchant_api
from chalicelib.routes.notify import answer_directly, notify
from chalicelib.routes.operator import operator_api
from chalicelib.routes.requests import ANY_CONTENT_TYPE
from chalicelib.routes.web import web

__all__ = ["app", "handle_schedule_event", "handle_sqs_event", "handle_stream_event"]


class AlipayGlobal(Chalice):
    """Chalice, with Alipay's notifications (every payment's hot path) answered straight from API Gateway's event."""

    def __call__(self, event: Any, context: Any) -> Any:
        # Only while nothing that path skips would apply: binary media types (base64 bodies, the Accept check) and
        # HTTP middleware are Chalice's request handling alone.
        if not self.api.binary_types and not any(kind in ("http", "all") for _, kind in self.middleware_handlers):
            answer = answer_directly(event)
            if answer is not None:
                self.current_request = None  # no view reads it; a later one must not see an earlier caller's
                return answer
        return super().__call__(event, context)


# Powertools formats the logs (JSON); Chalice's own plain handler on the same logger would print each line twice.
app = AlipayGlobal(app_name="alipay-global", configure_logs=False)
# No route takes or answers binary bodies (notifications are forms or JSON, pages HTML, the API JSON). Without
# Chalice's 16 default binary media types API Gateway hands every body over as text, as it already did for ours,
# and Chalice no longer matches each request's and response's content type against them (docs/testing.md).
app.api.binary_types = []
app.register_blueprint(buyer_api)  # /orders...: buyers, the Cognito user pool authorizer
app.register_blueprint(merchant_api)  # /merchant/...: the merchant's backend and operators, AWS IAM
app.register_blueprint(operator_api)  # /merchant/quarantine, /merchant/redrive, ...: operator actions, AWS IAM
app.register_blueprint(notify)
app.register_blueprint(web)

# The decorators need the queue's name and the stream's ARN when the app is loaded (and packaged).
SOURCES = event_sources()


@app.route("/health", content_types=ANY_CONTENT_TYPE)
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.on_sqs_message(queue=SOURCES.queue_name, batch_size=10)
def apply_notifications(event: SQSEvent) -> dict[str, Any]:
    """The notifications queue's consumer: each verified notification moves its order at most once."""
    return handle_sqs_event(event.to_dict(), event.context)


@app.on_dynamodb_record(stream_arn=SOURCES.stream_arn, batch_size=100)
def relay_order_events(event: DynamoDBEvent) -> dict[str, Any]:
    """The orders table's stream (the outbox): each order change becomes its business events."""
    return handle_stream_event(event.to_dict(), event.context)


@app.schedule(Rate(SOURCES.reconcile_rate_minutes, unit=Rate.MINUTES))
def reconcile_waiting_orders(event: CloudWatchEvent) -> dict[str, Any]:
    """Lost notifications: waiting orders are asked about at Alipay, and closed once past their timeout."""
    return handle_schedule_event(event.to_dict(), event.context)
