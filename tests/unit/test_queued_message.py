"""The queued notification's JSON: put together from its pieces on the webhook's path, the same text as json's."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.services.ports import QueuedNotification

# Text with what JSON must escape made frequent: quotes, backslashes, control characters, non-ASCII.
text = st.lists(
    st.one_of(st.sampled_from([*'"\\/\x00\x01\x1f\x7f\n\t ', "中", "😀", "\u2028"]), st.characters()), max_size=10
).map("".join)
# The webhook's body is base64; a message read back from the queue may carry anything.
bodies = st.one_of(st.none(), st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode("ascii")), text)
messages = st.builds(
    QueuedNotification,
    protocol=st.sampled_from(["openapi", "mapi", "antom"]),
    notify_id=text,
    out_trade_no=text,
    fields=st.dictionaries(text, text, max_size=6),
    received_at=text,
    body=bodies,
    charset=st.one_of(st.none(), st.sampled_from(["utf-8", "gbk"]), text),
    headers=st.one_of(st.none(), st.dictionaries(text, text, max_size=3)),
)


def encoded_as_one_object(message: QueuedNotification) -> str:
    """The message's JSON as one ``json.dumps`` of its dict (what ``to_json`` gave before it was built in pieces)."""
    data: dict[str, Any] = {
        "v": 2 if message.body is not None else 1,
        "protocol": message.protocol,
        "notify_id": message.notify_id,
        "out_trade_no": message.out_trade_no,
        "fields": dict(message.fields),
        "received_at": message.received_at,
    }
    if message.body is not None:
        data["body"] = message.body
        data["charset"] = message.charset
    if message.headers is not None:
        data["headers"] = dict(message.headers)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(message=messages)
def test_the_json_is_the_same_text_as_one_dumps_of_the_message(message: QueuedNotification) -> None:
    assert message.to_json() == encoded_as_one_object(message)


@settings(max_examples=100, deadline=None)
@given(message=messages.filter(lambda m: m.body is not None or m.charset is None))  # a v1 message has no charset
def test_the_json_reads_back_as_the_same_message(message: QueuedNotification) -> None:
    assert QueuedNotification.from_json(message.to_json()) == message


def test_a_body_that_needs_escapes_is_escaped() -> None:
    message = QueuedNotification("openapi", "n", "o", {}, "t", body='a"b\\c\n', charset=None)
    assert json.loads(message.to_json())["body"] == 'a"b\\c\n'
    assert '"body":"a\\"b\\\\c\\n"' in message.to_json()


def test_a_message_read_back_with_values_that_are_not_text_is_written_as_json_would() -> None:
    message = QueuedNotification.from_json(
        '{"protocol":"openapi","notify_id":7,"out_trade_no":null,"fields":{},'
        '"received_at":1.5,"body":"YQ==","charset":true}'
    )
    assert message.to_json() == encoded_as_one_object(message)
