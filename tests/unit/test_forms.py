"""The strict form parser and Alipay's canonical content, below the notification verifier."""

from __future__ import annotations

import pytest

from chalicelib.alipay.errors import CharsetError, MalformedMessage
from chalicelib.alipay.forms import (
    codec_for,
    covered_fields,
    joined_content,
    parse_form,
    parse_form_text,
    parse_form_text_and_bytes,
    quoted_content,
    signed_content,
)


def test_percent_escapes_and_plus_signs_decode_as_in_a_browser_form() -> None:
    form = parse_form(b"a=x+y%2Bz%20%26%3D&b=%E4%B8%AD&c=")
    assert form.get("a") == b"x y+z &="
    assert form.get("b") == "中".encode()
    assert form.get("c") == b""


def test_backslashes_are_literal_whether_raw_or_escaped() -> None:
    form = parse_form(b"a=%5Cx41\\n&b=\\%41\\\\")
    assert form.get("a") == b"\\x41\\n"
    assert form.get("b") == b"\\A\\\\"


def test_raw_non_ascii_bytes_are_kept_as_they_arrived() -> None:
    assert parse_form("a=中&b=%41".encode()).get("a") == "中".encode()


def test_a_raw_equals_sign_belongs_to_the_value() -> None:
    assert parse_form(b"a=b=c&b=1").get("a") == b"b=c"


def test_repeated_and_trailing_ampersands_lose_no_field() -> None:
    form = parse_form(b"&a=1&&b=2&")
    assert (form.get("a"), form.get("b")) == (b"1", b"2")


def test_fields_keep_the_order_they_were_sent_in() -> None:
    assert list(parse_form_text(b"c=1&a=2&b=3", charset_field="charset", default_charset="utf-8")[0]) == [
        "c",
        "a",
        "b",
    ]


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n"])
def test_rejects_a_blank_body(body: bytes) -> None:
    with pytest.raises(MalformedMessage, match="empty body"):
        parse_form(body)


@pytest.mark.parametrize("body", [b"a=1&b=%zz", b"a=1&b=%4", b"a=%4g", b"a=100%"])
def test_rejects_bad_percent_escapes(body: bytes) -> None:
    with pytest.raises(MalformedMessage, match="bad percent-encoding"):
        parse_form(body)


def test_rejects_a_json_body() -> None:
    with pytest.raises(MalformedMessage):
        parse_form(b'{"trade_status":"TRADE_SUCCESS"}')


def test_rejects_a_duplicate_field_name() -> None:
    with pytest.raises(MalformedMessage, match="duplicate field 'a'"):
        parse_form(b"a=1&b=2&a=1")


# The parser splits the whole form into one NUL-separated bytes (names and values), decodes it at once and finds a
# duplicate by the dict's size: each refusal holds on the fast path (one '=' a part), on the exact path (a raw '='
# inside a value, empty parts) and for a non-ASCII form (decoded only once its charset field is read).
_PATHS = {"fast": b"a=1&{}", "exact": b"&x=b=c&&{}&", "non-ascii": b"s=%E4%B8%AD&{}"}


@pytest.mark.parametrize("shape", list(_PATHS.values()), ids=list(_PATHS))
def test_parse_form_text_refuses_a_duplicate_name_on_every_path(shape: bytes) -> None:
    with pytest.raises(MalformedMessage, match="duplicate field 'd'"):
        parse_form_text(shape.replace(b"{}", b"d=1&d=2"), charset_field="charset", default_charset="utf-8")


@pytest.mark.parametrize("shape", list(_PATHS.values()), ids=list(_PATHS))
def test_parse_form_text_refuses_a_nul_in_a_value_on_every_path(shape: bytes) -> None:
    with pytest.raises(MalformedMessage, match="%00"):
        parse_form_text(shape.replace(b"{}", b"d=x%00y"), charset_field="charset", default_charset="utf-8")


@pytest.mark.parametrize("shape", list(_PATHS.values()), ids=list(_PATHS))
@pytest.mark.parametrize("part", [b"%64=1", b"d+e=1", b"d%3De=1", b"=1", b"d" * 65 + b"=1"])
def test_parse_form_text_refuses_a_bad_name_on_every_path(shape: bytes, part: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_form_text(shape.replace(b"{}", part), charset_field="charset", default_charset="utf-8")


@pytest.mark.parametrize("body", [b"a=%FF&a=1", b"a=&a=&charset=%D6%D0", b"charset=latin-1&s=%E4%B8%AD&charset=x"])
def test_a_duplicate_in_a_non_ascii_form_is_malformed_whatever_its_charset(body: bytes) -> None:
    with pytest.raises(MalformedMessage, match="duplicate field"):
        parse_form_text(body, charset_field="charset", default_charset="gbk")


def test_the_exact_path_reads_the_same_fields_as_the_fast_one() -> None:
    exact = parse_form_text(b"&a=b=c&&d=%26+1&", charset_field="charset", default_charset="utf-8")
    fast = parse_form_text(b"a=b%3Dc&d=%26+1", charset_field="charset", default_charset="utf-8")
    assert exact == fast == ({"a": "b=c", "d": "& 1"}, "utf-8")


def test_a_gbk_form_is_decoded_with_its_declared_charset_and_an_ascii_one_still_reports_it() -> None:
    assert parse_form_text(b"charset=gbk&s=%D6%D0", charset_field="charset", default_charset="utf-8") == (
        {"charset": "gbk", "s": "中"},
        "gbk",
    )
    assert parse_form_text(b"charset=GB2312&s=ab", charset_field="charset", default_charset="utf-8")[1] == "gbk"
    with pytest.raises(CharsetError, match="unsupported charset"):
        parse_form_text(b"charset=latin-1&s=ab", charset_field="charset", default_charset="utf-8")
    with pytest.raises(CharsetError, match="field 's' is not valid utf-8"):
        parse_form_text(b"charset=utf-8&s=%D6%D0", charset_field="charset", default_charset="gbk")


@pytest.mark.parametrize(
    ("body", "holds"),
    [(b"a=x%26y&b=1", True), (b"a=x&b=y", False), (b"a=%E4%B8%AD%26&b=1", True), (b"charset=gbk&a=%D6%D0", False)],
)
def test_the_split_forms_bytes_hold_an_ampersand_exactly_when_a_value_does(body: bytes, holds: bool) -> None:
    fields, _, form = parse_form_text_and_bytes(body, "charset", "utf-8")
    assert (b"&" in form) is holds is any("&" in value for value in fields.values())


def test_a_raw_forms_decode_reads_what_parse_form_text_reads() -> None:
    body = b"c=1&a=%E4%B8%AD&b=x+y"
    fields, _ = parse_form_text(body, charset_field="charset", default_charset="utf-8")
    assert parse_form(body).decode("utf-8") == fields


@pytest.mark.parametrize(
    ("charset", "codec"),
    [("utf-8", "utf-8"), ("UTF-8", "utf-8"), ("utf8", "utf-8"), ("GBK", "gbk"), ("gb2312", "gbk"), (" gbk ", "gbk")],
)
def test_codec_for_knows_the_charsets_alipay_sends(charset: str, codec: str) -> None:
    assert codec_for(charset) == codec


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "big5", ""])
def test_codec_for_rejects_other_charsets(charset: str) -> None:
    with pytest.raises(CharsetError, match="unsupported charset"):
        codec_for(charset)


def test_the_declared_charset_wins_over_the_default() -> None:
    fields, codec = parse_form_text(b"charset=utf-8&s=%E4%B8%AD", charset_field="charset", default_charset="gbk")
    assert (fields["s"], codec) == ("中", "utf-8")


def test_an_empty_charset_field_falls_back_to_the_default() -> None:
    fields, codec = parse_form_text(b"charset=&s=%D6%D0", charset_field="charset", default_charset="gbk")
    assert (fields["s"], codec) == ("中", "gbk")


def test_signed_content_sorts_drops_excluded_and_empty_values_and_keeps_raw_values() -> None:
    fields = {"b": "2 3", "a": "x&y=z", "sign": "s", "sign_type": "RSA2", "e": "", "A": "upper"}
    assert signed_content(fields, ("sign", "sign_type")) == "A=upper&a=x&y=z&b=2 3"


def test_signed_content_is_the_join_of_the_covered_fields_and_the_join_filters_nothing() -> None:
    fields = {"b": "2", "sign": "s", "a": "", "c": "3"}
    covered = covered_fields(fields, ("sign",))
    assert covered == {"b": "2", "c": "3"}
    assert fields == {"b": "2", "sign": "s", "a": "", "c": "3"}  # a copy: the input is untouched
    assert joined_content(covered) == signed_content(fields, ("sign",)) == "b=2&c=3"
    assert joined_content({"b": "", "a": "1"}) == "a=1&b="  # a verifier's other reading keeps an empty value


def test_signed_content_of_requests_keeps_sign_type() -> None:
    assert signed_content({"sign_type": "RSA2", "sign": "s", "app_id": "1"}, ("sign",)) == "app_id=1&sign_type=RSA2"


def test_quoted_content_keeps_the_given_order_and_does_not_encode() -> None:
    assert quoted_content([("b", "1 2"), ("a", "中&")]) == 'b="1 2"&a="中&"'
