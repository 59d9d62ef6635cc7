"""Properties of the protocol core, checked on generated inputs (1024-bit keys keep each test short)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote_plus, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.alipay import mapi, openapi
from chalicelib.alipay.errors import MalformedMessage, SignatureMismatch
from chalicelib.alipay.forms import form_quote, parse_form
from chalicelib.alipay.notifications import AlipayProtocol, Notification, verify_notification
from chalicelib.alipay.params import INJECTED_FIELD
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, decode_signature, verify_signature
from tests.alipay_fixtures import (
    alipay_keys,
    form_body,
    openapi_notification_fields,
    securitypay_result,
    sign_fields,
    signed_json_response,
)
from tests.keygen import rsa_key

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Field names Alipay could send (the parser's alphabet), minus the two that are not signed.
names = st.from_regex(r"[a-z][a-z0-9_]{0,19}", fullmatch=True).filter(lambda k: k not in ("sign", "sign_type"))
# Any text, with the characters that break naive form, JSON or quoting code made frequent.
tricky = st.sampled_from([*"&=%+{}\"\\ '#?/中文ñ€😀", "%20", "%zz", "\\u4e2d", "&sign=", "a=b&c=d"])
values = st.lists(st.one_of(tricky, st.characters(codec="utf-8")), max_size=12).map("".join)
# Characters must survive a form round trip: NUL is refused by the parser, so leave it out here.
form_values = values.map(lambda v: v.replace("\x00", ""))
non_blank = form_values.filter(lambda v: v.strip() != "")


def keys() -> AlipayPublicKeys:
    return alipay_keys(rsa_key("alipay", 1024))


def verify(body: bytes) -> Notification:
    return verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=keys(), sign_type=SignType.RSA2)


def base_fields() -> dict[str, str]:
    return openapi_notification_fields(charset="utf-8")


BASE = set(base_fields())
extra_fields = st.dictionaries(names.filter(lambda k: k not in BASE), form_values, max_size=6)


@PROPERTY
@given(extra=extra_fields)
def test_any_signed_notification_verifies_and_keeps_every_field(extra: dict[str, str]) -> None:
    fields = {**base_fields(), **extra}
    signed = sign_fields(fields, rsa_key("alipay", 1024))
    if any(INJECTED_FIELD.search(v) for v in fields.values()):
        # "&name=" inside a value would make Alipay's unescaped content ambiguous: refused, never guessed at.
        with pytest.raises(MalformedMessage, match="holds '&name='"):
            verify(form_body(signed))
        return
    # Every signed field is handed on; an empty one is not signed, so it is not.
    assert dict(verify(form_body(signed)).fields) == {k: v for k, v in signed.items() if v != ""}


@PROPERTY
@given(extra=extra_fields, data=st.data())
def test_changing_any_signed_value_breaks_the_signature(extra: dict[str, str], data: st.DataObject) -> None:
    signed = sign_fields({**base_fields(), **extra}, rsa_key("alipay", 1024))
    # charset is signed too, but changing it fails earlier (CharsetError): tested in test_notifications.
    key = data.draw(st.sampled_from(sorted(set(signed) - {"sign", "sign_type", "charset"})))
    new_value = data.draw(form_values.filter(lambda v: v != signed[key]))
    tampered = {**signed, key: new_value}
    try:
        verify(form_body(tampered))
    except (SignatureMismatch, MalformedMessage):  # MalformedMessage: the new value holds "&name="
        return
    raise AssertionError(f"{key}: {signed[key]!r} -> {new_value!r} still verifies")


@PROPERTY
@given(extra=extra_fields, name=names, value=non_blank)
def test_adding_a_non_empty_field_breaks_the_signature(extra: dict[str, str], name: str, value: str) -> None:
    signed = sign_fields({**base_fields(), **extra}, rsa_key("alipay", 1024))
    if name in signed:
        return
    try:
        verify(form_body({**signed, name: value}))
    except SignatureMismatch:
        return
    raise AssertionError(f"adding {name}={value!r} still verifies")


@PROPERTY
@given(extra=extra_fields, data=st.data())
def test_removing_any_signed_field_breaks_the_signature(extra: dict[str, str], data: st.DataObject) -> None:
    signed = sign_fields({**base_fields(), **extra}, rsa_key("alipay", 1024))
    removable = sorted(k for k, v in signed.items() if v and k not in ("sign", "sign_type", "charset"))
    key = data.draw(st.sampled_from(removable))
    try:
        verify(form_body({k: v for k, v in signed.items() if k != key}))
    except SignatureMismatch:
        return
    raise AssertionError(f"removing {key} still verifies")


# As for text_fields below: text that looks like another field ("&0=...") is refused at the edge, never signed.
gbk_text = st.text(st.characters(codec="gbk", exclude_categories=("Cs", "Cc")), max_size=20).filter(
    lambda s: not INJECTED_FIELD.search(s)
)


@PROPERTY
@given(subject=gbk_text, body=gbk_text)
def test_any_gbk_notification_verifies(subject: str, body: str) -> None:
    fields = openapi_notification_fields(charset="gbk", subject=subject, body=body)
    signed = sign_fields(fields, rsa_key("alipay", 1024), charset="gbk")
    notification = verify(form_body(signed, "gbk"))
    assert (notification.fields.get("subject", ""), notification.fields.get("body", "")) == (subject, body)


# Text that looks like another field ("&0=...") is refused at the edge (params.INJECTED_FIELD), not signed.
text_fields = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40).filter(
    lambda s: not INJECTED_FIELD.search(s)
)


@PROPERTY
@given(
    subject=text_fields.filter(lambda s: s.strip() != ""),
    body=text_fields.filter(lambda s: s == "" or s.strip() != ""),  # blank optional text is refused, not sent
    passback=text_fields.filter(lambda s: s == "" or s.strip() != ""),
)
def test_any_app_pay_order_string_decodes_back_and_verifies(subject: str, body: str, passback: str) -> None:
    merchant = rsa_key("merchant", 1024)
    text = openapi.build_app_pay_order_string(
        LocalKeySigner(merchant),
        app_id="2021000000000001",
        notify_url="https://api.example.com/notify?a=1&b=2",
        now=datetime(2024, 1, 1, tzinfo=UTC),
        out_trade_no="ORDER-1",
        subject=subject,
        total_amount="1.00",
        body=body or None,
        passback_params=passback or None,
    )
    params = parse_form(text.encode("ascii")).decode("utf-8")
    sign = params.pop("sign")
    content = openapi.request_signed_content(params).encode("utf-8")
    verify_signature(AlipayPublicKeys.of(merchant.public_key()), content, decode_signature(sign), SignType.RSA2)
    biz = json.loads(params["biz_content"])
    assert (biz["subject"], biz.get("body", ""), biz.get("passback_params", "")) == (subject, body, passback)


legacy_text = text_fields.filter(lambda s: '"' not in s and "&sign=" not in s and "&sign_type=" not in s)


@PROPERTY
@given(subject=legacy_text.filter(lambda s: s.strip() != ""), body=legacy_text.filter(lambda s: s.strip() != ""))
def test_any_legacy_order_signs_and_its_result_verifies(subject: str, body: str) -> None:
    merchant = rsa_key("merchant", 1024)
    pairs = mapi.securitypay_order_params(
        partner="2088000000000003",
        notify_url="https://api.example.com/notify",
        out_trade_no="ORDER-1",
        subject=subject,
        body=body,
        currency="USD",
        total_fee="1.00",
    )
    order = mapi.sign_securitypay_order(pairs, LocalKeySigner(merchant, SignType.RSA))
    content, _, tail = order.partition('&sign="')
    sign = unquote(tail.split('"', 1)[0])
    verify_signature(AlipayPublicKeys.of(merchant.public_key()), content.encode(), decode_signature(sign), SignType.RSA)
    # Alipay's result echoes the order and signs it again; every field comes back as sent.
    result = securitypay_result(order, rsa_key("alipay", 1024))
    verified = mapi.verify_securitypay_result(result, keys())
    assert (verified.fields["subject"], verified.fields["body"]) == (subject, body)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), values, st.just("}"), st.just('{"')),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(values, inner, max_size=3),
    max_leaves=10,
)


@PROPERTY
@given(
    body=st.dictionaries(values, json_values, max_size=6),
    ensure_ascii=st.booleans(),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :\n")]),
)
def test_any_signed_json_response_verifies_over_its_exact_raw_text(
    body: dict[str, object], ensure_ascii: bool, separators: tuple[str, str]
) -> None:
    raw = json.dumps(body, ensure_ascii=ensure_ascii, separators=separators)
    text = signed_json_response("alipay_trade_query_response", raw, rsa_key("alipay", 1024))
    response = openapi.verify_response(text, keys())
    assert response.content == raw
    assert response.body == body


@PROPERTY
@given(value=values, encoding=st.sampled_from(["utf-8", "gbk"]))
def test_form_quote_agrees_with_urllib_quote_plus(value: str, encoding: str) -> None:
    try:
        expected = quote_plus(value, safe="", encoding=encoding)
    except UnicodeEncodeError:
        return
    assert form_quote(value, encoding) == expected


@PROPERTY
@given(
    value=st.text(alphabet=st.sampled_from("%+ &=/:,\"{}~._-aZ09\x00\x7f"), max_size=40)
    | st.text(alphabet=st.characters(max_codepoint=127)),
    encoding=st.sampled_from(["utf-8", "gbk", "GB18030", "UTF8"]),
)
def test_form_quote_of_ascii_text_agrees_with_urllib_quote_plus(value: str, encoding: str) -> None:
    # ASCII text takes form_quote's replace-per-character path, where '%' and '+' must be escaped before the
    # escapes and spaces that introduce them.
    assert form_quote(value, encoding) == quote_plus(value, safe="", encoding=encoding)
