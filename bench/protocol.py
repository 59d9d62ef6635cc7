"""Protocol core: verify a realistic notification, build + sign an order string, import time."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.common import import_seconds_interleaved, interleaved, row
from chalicelib.alipay.notifications import AlipayProtocol, notification_content, verify_notification
from chalicelib.alipay.openapi import build_app_pay_order_string
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, b64encode

FIELDS = {  # a realistic Open Platform payment notification: 25 fields with sign and sign_type
    "gmt_create": "2026-11-26 15:59:58",
    "charset": "utf-8",
    "seller_email": "merchant@example.com",
    "subject": "Order 1234 - 2 items",
    "body": "Coffee beans 500g x2",
    "buyer_id": "2088102116773037",
    "invoice_amount": "12.34",
    "notify_id": "2026112600222155958073771441234567",
    "fund_bill_list": '[{"amount":"12.34","fundChannel":"ALIPAYACCOUNT"}]',
    "notify_type": "trade_status_sync",
    "trade_status": "TRADE_SUCCESS",
    "receipt_amount": "12.34",
    "app_id": "2021000000000001",
    "buyer_pay_amount": "12.34",
    "sign_type": "RSA2",
    "seller_id": "2088102119685838",
    "gmt_payment": "2026-11-26 16:00:00",
    "notify_time": "2026-11-26 16:00:01",
    "passback_params": "merchant%3Dabc",
    "version": "1.0",
    "out_trade_no": "0719141034-6418",
    "total_amount": "12.34",
    "trade_no": "2026112622001400000000000001",
    "point_amount": "0.00",
    "buyer_logon_id": "abc***@example.com",
}


def run() -> list[str]:
    """Measure and return the printed lines."""
    alipay = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = alipay.public_key()
    content = notification_content(FIELDS).encode()
    signature = alipay.sign(content, padding.PKCS1v15(), hashes.SHA256())
    body = urlencode({**FIELDS, "sign": b64encode(signature)}).encode()
    keys = AlipayPublicKeys.of(public)

    def ours_verify() -> None:
        verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=keys, sign_type=SignType.RSA2)

    def raw_verify() -> None:
        public.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())

    verify = interleaved(ours_verify, raw_verify, number=200)
    lines = [row("verify notification (25 fields, RSA2)", verify, "raw RSA-2048 verify", "<= 2.0x")]

    signer = LocalKeySigner(alipay, SignType.RSA2)
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    order_content = b"x" * 480  # about the length of a real order string's signed content

    def ours_sign() -> None:
        build_app_pay_order_string(
            signer,
            app_id="2021000000000001",
            notify_url="https://api.example.com/alipay/notify",
            now=now,
            out_trade_no="0719141034-6418",
            subject="Order 1234 - 2 items",
            total_amount="12.34",
            body="Coffee beans 500g x2",
            timeout_express="30m",
        )

    def raw_sign() -> None:
        alipay.sign(order_content, padding.PKCS1v15(), hashes.SHA256())

    sign = interleaved(ours_sign, raw_sign, number=50)  # rounds of 20 were too short to be steady
    lines.append(row("build + sign app-pay order string", sign, "raw RSA-2048 sign", "<= 1.10x"))

    package, baseline = import_seconds_interleaved(
        "import chalicelib.alipay.notifications, chalicelib.alipay.openapi, chalicelib.alipay.mapi; "
        "import sys; assert not any(m.split('.')[0] in ('Crypto', 'Cryptodome', 'OpenSSL') for m in sys.modules)",
        "import cryptography.hazmat.primitives.asymmetric.rsa",
    )
    lines.append(
        f"{'import protocol package':<46} {package * 1e3:>9.1f} ms | {'import cryptography rsa alone':<30} "
        f"{baseline * 1e3:>9.1f} ms | ratio {package / baseline:5.2f}x (target <= 1.15x); no pycryptodome/pyOpenSSL"
    )
    return lines
