/*
 * A web checkout with Alipay (docs/clients.md): the shopper, signed in on the merchant's site, orders; the browser
 * goes to Alipay's cashier (payment_url, or payment_form for a POST); Alipay sends it back through the product's
 * GET /alipay/return, which verifies Alipay's signature and redirects to the merchant's result page
 * (RESULT_PAGE_URL) with ?out_trade_no=...&status=...; that page asks the server for the order's status.
 * The status in the URL is a hint for the first paint only: GET /orders/{out_trade_no} decides.
 *
 * Used by checkout.html and result.html beside it; under Node 20+ by tests/e2e/test_client_examples.py.
 */
"use strict";

var PAID = ["TRADE_SUCCESS", "TRADE_FINISHED"];

async function api(apiUrl, idToken, method, path, body, headers) {
  var response = await fetch(apiUrl.replace(/\/$/, "") + path, {
    method: method,
    headers: Object.assign(
      { Authorization: "Bearer " + idToken, Accept: "application/json" },
      body === undefined ? {} : { "Content-Type": "application/json" },
      headers || {}
    ),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  var parsed = await response.json().catch(function () { return null; });
  if (!response.ok) {
    // {"code", "message", "field"?}: the message says what to fix (e.g. return_url for a web order).
    var error = new Error((parsed && parsed.message) || "HTTP " + response.status);
    error.status = response.status;
    error.code = parsed && parsed.code;
    error.field = parsed && parsed.field;
    throw error;
  }
  return parsed;
}

/*
 * POST /orders for the web: channel "page" (desktop) or "wap" (mobile browser), and the return_url Alipay sends
 * the shopper back to: the product's /alipay/return (deployed: https://<api>/api/alipay/return). The answer has
 * payment_url and payment_form instead of order_info.
 */
function createWebOrder(options) {
  var body = { items: options.items, channel: options.channel || "page", return_url: options.returnUrl };
  if (options.currency) body.currency = options.currency;
  var headers = { "Idempotency-Key": options.idempotencyKey || String(Date.now()) + Math.random().toString(16).slice(2) };
  return api(options.apiUrl, options.idToken, "POST", "/orders", body, headers);
}

// Send the browser to Alipay's cashier: a GET to payment_url, or (useForm) the self-submitting payment_form.
function goToAlipay(order, useForm, win) {
  win = win || window;
  win.sessionStorage.setItem("alipay.out_trade_no", order.out_trade_no);
  if (useForm) {
    win.document.open();
    win.document.write(order.payment_form);
    win.document.close();
  } else {
    win.location.assign(order.payment_url);
  }
}

function sleep(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}

/*
 * On the result page: the order named in the query (or the one this tab started), its status from the server,
 * polled while it still waits (the notification may be a moment behind the shopper). Resolves to
 * {outcome: "paid" | "pending" | "closed", outTradeNo, hint, order}: "pending" means "we are confirming your
 * payment": never ask the shopper to pay again for it; check again later.
 */
async function confirmReturn(options) {
  var query = new URLSearchParams(options.search);
  var outTradeNo = query.get("out_trade_no") || (options.storage && options.storage.getItem("alipay.out_trade_no"));
  if (!outTradeNo) throw new Error("no out_trade_no in the return URL");
  var deadline = Date.now() + (options.timeoutMs === undefined ? 30000 : options.timeoutMs);
  var order;
  for (;;) {
    order = await api(options.apiUrl, options.idToken, "GET", "/orders/" + encodeURIComponent(outTradeNo));
    if (order.status !== "WAIT_BUYER_PAY" || Date.now() >= deadline) break;
    await sleep(options.intervalMs === undefined ? 1000 : options.intervalMs);
  }
  var outcome = PAID.indexOf(order.status) >= 0 ? "paid" : order.status === "TRADE_CLOSED" ? "closed" : "pending";
  return { outcome: outcome, outTradeNo: outTradeNo, hint: query.get("status"), order: order };
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { createWebOrder: createWebOrder, goToAlipay: goToAlipay, confirmReturn: confirmReturn };
}
