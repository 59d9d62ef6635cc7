"""The Alipay app-pay protocols, both of them: pure functions over bytes and strings (no AWS, clock or I/O).

Open Platform ``alipay.trade.app.pay`` (RSA2) lives in ``openapi``; legacy Alipay Global
``mobile.securitypay.pay`` in ``mapi``; notifications of both in ``notifications``; web checkout (page/wap pay,
``create_forex_trade[_wap]``, the signed return) in ``web``.

Import from the submodules (``chalicelib.alipay.notifications``, ...): this package's ``__init__`` imports
nothing, so the webhook's cold start loads only the modules it uses.
"""
