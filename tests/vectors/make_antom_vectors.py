"""Generate tests/vectors/antom_vectors.json with the official Antom SDK's own signing code. Not run in CI.

The SDK is github.com/alipay/global-open-sdk-python (not on PyPI). These vectors were made from its commit
``SDK_COMMIT`` below, with exactly these files of it and nothing of this product:

- ``com/alipay/ams/api/tools/signature_tool.py``: ``gen_sign_content``, ``sign`` (SHA256withRSA, base64, then
  ``quote_plus``) and ``verify`` (``unquote_plus``, then verify) -- what ``DefaultAlipayClient`` uses to sign
  requests and check replies (``com/alipay/ams/api/default_alipay_client.py``);
- ``com/alipay/ams/api/tools/webhook_tool.py``: ``check_signature``, the SDK's notification check;
- ``com/alipay/ams/api/tools/constants.py`` and ``com/alipay/ams/api/exception/exception.py`` (imported by them).

How to run it again (a throwaway environment; nothing goes into .venv)::

    git -C <mirror of global-open-sdk-python> show <commit>:<each file above> > /tmp/antom-sdk/<same path>
    touch /tmp/antom-sdk/com/__init__.py ... (the package __init__ files, empty in the SDK)
    python3 -m venv --system-site-packages /tmp/antom-sdk-venv   # cryptography from the system
    /tmp/antom-sdk-venv/bin/pip install rsa==4.9                  # signature_tool imports rsa (pure Python)
    PYTHONPATH=/tmp/antom-sdk /tmp/antom-sdk-venv/bin/python tests/vectors/make_antom_vectors.py

The key is the published test pair tests/vectors/test_merchant_{private,public}_key.pem, never for real money. The
signing tool wants a PKCS#1 ``RSA PRIVATE KEY`` (it adds that marker to a bare key), so the PKCS#8 file is converted
to PKCS#1 first; the key is the same. The SDK signs strings, encoded UTF-8: the bodies below are UTF-8 text.
RSA PKCS#1 v1.5 is deterministic, so the same inputs always give the same signatures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from com.alipay.ams.api.tools import signature_tool, webhook_tool  # type: ignore[import-not-found]
from cryptography.hazmat.primitives import serialization

SDK = "github.com/alipay/global-open-sdk-python"
SDK_COMMIT = "bd5072ca99894ac0bf3adcd4eb60f77b650d1efe"
HERE = Path(__file__).parent
CLIENT_ID = "SANDBOX_5YEZ0A2ZMTEST0001"
NOTIFY_URL = "https://pay.example.com/prod/antom/notify"


def keys() -> tuple[str, str]:
    private = serialization.load_pem_private_key((HERE / "test_merchant_private_key.pem").read_bytes(), None)
    pkcs1 = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    return pkcs1, (HERE / "test_merchant_public_key.pem").read_text()


def signed(method: str, path: str, client_id: str, time: str, body: str, private: str, public: str) -> dict[str, str]:
    content = signature_tool.gen_sign_content(method, path, client_id, time, body)
    sign_value = signature_tool.sign(method, path, client_id, time, body, private)
    assert signature_tool.verify(method, path, client_id, time, body, sign_value, public)
    # The header exactly as DefaultAlipayClient.execute builds it (keyVersion defaults to "1").
    header = "algorithm=RSA256,keyVersion=1,signature=" + sign_value
    return {"signed_content": content, "signature": sign_value, "signature_header": header}


def sdk_accepts(*args: str) -> bool:
    """``check_signature``'s verdict; its ``rsa.verify`` raises on a mismatch instead of returning False."""
    try:
        return bool(webhook_tool.check_signature(*args))
    except Exception:  # rsa.pkcs1.VerificationError, whatever the installed rsa version names it
        return False


def main() -> None:
    private, public = keys()
    vectors: dict[str, object] = {
        "_about": (
            f"Made by tests/vectors/make_antom_vectors.py with {SDK} at {SDK_COMMIT} "
            "(com/alipay/ams/api/tools/signature_tool.py sign/verify/gen_sign_content, webhook_tool.py "
            "check_signature) and the test key pair tests/vectors/test_merchant_{private,public}_key.pem."
        ),
        "sdk": SDK,
        "sdk_commit": SDK_COMMIT,
        "client_id": CLIENT_ID,
    }

    # Requests: what the merchant signs. Times: Java's SDK sends milliseconds, Python's ISO 8601; both verbatim.
    requests = []
    pay = {
        "inputs": {
            "out_trade_no": "ORDER-20261205-0001",
            "subject": "Green tea 绿茶 x2",
            "amount": "12.34",
            "currency": "USD",
            "payment_method_type": "ALIPAY_CN",
            "redirect_url": "https://shop.example.com/paid",
            "notify_url": NOTIFY_URL,
            "expiry": "2026-12-05T10:30:00+00:00",
            "terminal_type": "WAP",
            "os_type": "IOS",
        },
        "body": (
            '{"productCode":"CASHIER_PAYMENT","paymentRequestId":"ORDER-20261205-0001","order":{"referenceOrderId":'
            '"ORDER-20261205-0001","orderDescription":"Green tea 绿茶 x2","orderAmount":{"currency":"USD","value":'
            '"1234"}},"paymentAmount":{"currency":"USD","value":"1234"},"paymentMethod":{"paymentMethodType":'
            '"ALIPAY_CN"},"paymentRedirectUrl":"https://shop.example.com/paid","paymentNotifyUrl":'
            f'"{NOTIFY_URL}","paymentExpiryTime":"2026-12-05T10:30:00+00:00","env":{{"terminalType":"WAP",'
            '"osType":"IOS"}}'
        ),
    }
    json.loads(pay["body"])  # well-formed
    for name, path, time, item in (
        ("pay", "/ams/api/v1/payments/pay", "1764930600000", pay),
        ("inquiry_payment", "/ams/api/v1/payments/inquiryPayment", "1764930601234",
         {"inputs": {"out_trade_no": "ORDER-20261205-0001"}, "body": '{"paymentRequestId":"ORDER-20261205-0001"}'}),
        ("cancel_iso_time", "/ams/api/v1/payments/cancel", "2026-12-05T10:31:00+00:00",
         {"inputs": {"out_trade_no": "ORDER-20261205-0001"}, "body": '{"paymentRequestId":"ORDER-20261205-0001"}'}),
        ("refund_jpy", "/ams/api/v1/payments/refund", "1764931000000",
         {"inputs": {"out_request_no": "R-ORDER-20261205-0002-1", "payment_id": "20261205114010800100188000000001",
                     "amount": "500", "currency": "JPY", "reason": "damaged", "notify_url": NOTIFY_URL},
          "body": '{"refundRequestId":"R-ORDER-20261205-0002-1","paymentId":"20261205114010800100188000000001",'
                  '"refundAmount":{"currency":"JPY","value":"500"},"refundReason":"damaged",'
                  f'"refundNotifyUrl":"{NOTIFY_URL}"}}'}),
        ("inquiry_refund", "/ams/api/v1/payments/inquiryRefund", "1764931005000",
         {"inputs": {"out_request_no": "R-ORDER-20261205-0002-1"},
          "body": '{"refundRequestId":"R-ORDER-20261205-0002-1"}'}),
        ("sandbox_path", "/ams/sandbox/api/v1/payments/inquiryPayment", "1764930601234",
         {"inputs": {"out_trade_no": "ORDER-20261205-0001"}, "body": '{"paymentRequestId":"ORDER-20261205-0001"}'}),
    ):  # fmt: skip
        requests.append(
            {"name": name, "method": "POST", "path": path, "request_time": time, **item}
            | signed("POST", path, CLIENT_ID, time, item["body"], private, public)
        )
    vectors["requests"] = requests

    # Replies: what Antom signs back (response-time), verified by the SDK's verify over the request's path.
    replies = []
    for name, path, time, body in (
        ("pay_in_process", "/ams/api/v1/payments/pay", "2026-12-05T18:30:00+08:00",
         '{"result":{"resultCode":"PAYMENT_IN_PROCESS","resultStatus":"U","resultMessage":"payment in process"},'
         '"paymentRequestId":"ORDER-20261205-0001","paymentId":"20261205114010800100188000000001",'
         '"paymentAmount":{"currency":"USD","value":"1234"},"paymentCreateTime":"2026-12-05T18:30:00+08:00",'
         '"normalUrl":"https://open-sea-global.alipay.com/cashier?token=abc%2Bdef",'
         '"schemeUrl":"alipays://platformapi/startapp?appId=20000067","applinkUrl":"https://render.alipay.com/p/s/x"}'),
        ("inquiry_payment_success", "/ams/api/v1/payments/inquiryPayment", "2026-12-05T18:31:00+08:00",
         '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},'
         '"paymentStatus":"SUCCESS","paymentRequestId":"ORDER-20261205-0001",'
         '"paymentId":"20261205114010800100188000000001","paymentAmount":{"currency":"USD","value":"1234"},'
         '"paymentTime":"2026-12-05T18:30:40+08:00"}'),
        ("inquiry_payment_not_found", "/ams/api/v1/payments/inquiryPayment", "2026-12-05T18:31:00+08:00",
         '{"result":{"resultCode":"ORDER_NOT_EXIST","resultStatus":"F","resultMessage":"order not exist"}}'),
        ("cancel_success", "/ams/api/v1/payments/cancel", "2026-12-05T18:32:00+08:00",
         '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},'
         '"paymentId":"20261205114010800100188000000001","paymentRequestId":"ORDER-20261205-0001",'
         '"cancelTime":"2026-12-05T18:32:00+08:00"}'),
        ("refund_success", "/ams/api/v1/payments/refund", "2026-12-05T18:40:00+08:00",
         '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},'
         '"refundRequestId":"R-ORDER-20261205-0002-1","refundId":"20261205114010800100188000000009",'
         '"paymentId":"20261205114010800100188000000001","refundAmount":{"currency":"JPY","value":"500"},'
         '"refundTime":"2026-12-05T18:40:00+08:00"}'),
        ("inquiry_refund_success", "/ams/api/v1/payments/inquiryRefund", "2026-12-05T18:41:00+08:00",
         '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},'
         '"refundRequestId":"R-ORDER-20261205-0002-1","refundId":"20261205114010800100188000000009",'
         '"refundStatus":"SUCCESS","refundAmount":{"currency":"JPY","value":"500"}}'),
    ):  # fmt: skip
        json.loads(body)
        replies.append(
            {"name": name, "method": "POST", "path": path, "response_time": time, "body": body}
            | signed("POST", path, CLIENT_ID, time, body, private, public)
        )
    vectors["replies"] = replies

    # Notifications: signed for the path of the notify URL as registered (stage prefix included), checked by the
    # SDK's webhook_tool.check_signature the way a merchant's server would.
    notifications = []
    notify_path = "/prod/antom/notify"
    for name, time, body in (
        ("payment_result_paid", "1764930640000",
         '{"notifyType":"PAYMENT_RESULT","result":{"resultCode":"SUCCESS","resultStatus":"S",'
         '"resultMessage":"success"},"paymentRequestId":"ORDER-20261205-0001",'
         '"paymentId":"20261205114010800100188000000001","paymentAmount":{"currency":"USD","value":"1234"},'
         '"paymentCreateTime":"2026-12-05T18:30:00+08:00","paymentTime":"2026-12-05T18:30:40+08:00"}'),
        ("refund_result_krw", "2026-12-05T18:40:05+08:00",
         '{"notifyType":"REFUND_RESULT","result":{"resultCode":"SUCCESS","resultStatus":"S",'
         '"resultMessage":"success"},"refundStatus":"SUCCESS","refundRequestId":"R-ORDER-20261205-0003-1",'
         '"refundId":"20261205114010800100188000000010","refundAmount":{"currency":"KRW","value":"15000"},'
         '"refundTime":"2026-12-05T18:40:00+08:00"}'),
    ):  # fmt: skip
        json.loads(body)
        entry = {
            "name": name, "method": "POST", "notify_url": NOTIFY_URL, "path": notify_path, "request_time": time,
            "body": body,
        } | signed("POST", notify_path, CLIENT_ID, time, body, private, public)  # fmt: skip
        assert webhook_tool.check_signature(
            "POST", notify_path, CLIENT_ID, time, body, entry["signature_header"], public
        )
        # What the SDK says when the path is the one the request arrived by behind a custom domain (no stage).
        entry["sdk_accepts_other_path"] = sdk_accepts(
            "POST", "/antom/notify", CLIENT_ID, time, body, entry["signature_header"], public
        )
        notifications.append(entry)
    vectors["notifications"] = notifications

    out = HERE / "antom_vectors.json"
    out.write_text(json.dumps(vectors, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
