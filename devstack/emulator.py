"""The AWS emulator: moto's server on loopback, corrected where moto answers differently from AWS."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from chalicelib.topology import SIGNING_ALGORITHM

# How a fix is installed: ``setattr`` in the emulator process; a test passes ``monkeypatch.setattr`` to undo it.
Patch = Callable[[Any, str, Any], None]

KMS_RAW_MESSAGE_LIMIT = 4096
KMS_SIGNING_ALGORITHM = SIGNING_ALGORITHM


def make_kms_sign_like_aws(patch: Patch = setattr) -> None:
    """Make moto's KMS ``Sign`` honour ``MessageType`` as AWS does."""
    # moto 5.2.5 hashes a DIGEST message again (a signature no verifier accepts) and signs RAW messages of any
    # length; AWS signs a DIGEST as the hash and rejects RAW messages over 4096 bytes. The product sends long
    # order strings as a DIGEST: without this the local stack would sign them wrongly where AWS would not.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils
    from moto.kms.exceptions import ValidationException
    from moto.kms.responses import KmsResponse

    original_sign = KmsResponse.sign

    def sign(self: KmsResponse) -> str:
        message_type = self._get_param("MessageType") or "RAW"
        message = self._get_param("Message")
        if isinstance(message, str):
            message = message.encode("utf-8")
        if message_type == "RAW":
            if len(message) > KMS_RAW_MESSAGE_LIMIT:
                raise ValidationException(
                    "1 validation error detected: Value at 'message' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {KMS_RAW_MESSAGE_LIMIT}"
                )
            return str(original_sign(self))
        algorithm = self._get_param("SigningAlgorithm")
        if algorithm != KMS_SIGNING_ALGORITHM:
            # Only the product's algorithm is emulated for digests; anything else keeps moto's own answer.
            return str(original_sign(self))
        key: Any = self.kms_backend.describe_key(self._get_param("KeyId"))
        signature = key.private_key.private_key.sign(message, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return json.dumps(
            {"KeyId": key.arn, "Signature": base64.b64encode(signature).decode(), "SigningAlgorithm": algorithm}
        )

    patch(KmsResponse, "sign", sign)


def make_sqs_receive_linear(patch: Patch = setattr) -> None:
    """Make moto's SQS ``ReceiveMessage`` cost what it costs in AWS: linear in the queue, not quadratic."""
    # moto 5.2.5 checks each message it hands out against the queue's retention period by recomputing every
    # attribute of the queue (three times), and several attributes (the approximate counts) each walk every
    # message: a receive from a queue holding n messages walks it about 100 times. A backlog of a few hundred
    # notifications then slows every receive, so the consumer falls further behind and the backlog grows. This
    # reads the retention period directly; what is received, and when a message expires, stay the same.
    from moto.core.utils import unix_time
    from moto.sqs.models import Message, SQSBackend

    def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Message) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]

    patch(SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period)


def make_event_delivery_parse_once(patch: Patch = setattr) -> None:
    """Let moto parse each JSONPath of an EventBridge target's input once, not once per delivered event."""
    # moto 5.2.5 re-parses the default input paths with jsonpath-ng (a PLY grammar, milliseconds a parse) for
    # every event and target: a tenth of the emulator's time under load. The parsed expressions are immutable.
    import functools

    import jsonpath_ng.ext

    patch(jsonpath_ng.ext, "parse", functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse))  # type: ignore[attr-defined]


def make_dynamodb_writes_atomic(patch: Patch = setattr) -> None:
    """Make moto's conditional writes atomic, as DynamoDB's are: one item write at a time."""
    # moto 5.2.5 serves each request on its own thread and evaluates a ConditionExpression, then writes, with
    # nothing in between held: two concurrent UpdateItems conditioned on the same old status can both succeed.
    # DynamoDB never lets that happen, and the product's exactly-once rests on it (concurrent consumers). The
    # soak found it: one of 8,287 orders written twice with the same status when five consumers ran at once.
    import functools
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    writing = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def atomic(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with writing:
                return __original(*args, **kwargs)

        patch(DynamoDBBackend, name, functools.wraps(original)(atomic))


def serve(host: str, port: int) -> None:
    """Serve every emulated AWS service on ``host:port`` until the process is told to stop."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    make_kms_sign_like_aws()
    make_sqs_receive_linear()
    make_event_delivery_parse_once()
    make_dynamodb_writes_atomic()
    # One line per AWS call drowns out the product's own logs; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    application = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, application, threaded=True, request_handler=MotoRequestHandler)
    print(f"emulator listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
