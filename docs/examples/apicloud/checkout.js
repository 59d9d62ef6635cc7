/*
 * Paying an order from an APICloud app with the alipayGlobal module (docs/clients.md).
 *
 * The flow: create the order as the signed-in buyer (POST /orders with the user pool's ID token), hand its
 * order_info to alipayGlobal.payOrder, report what the SDK returned (POST /orders/{out_trade_no}/client-result),
 * then ask the server for the order's status (GET /orders/{out_trade_no}) until it is settled or the wait is over.
 * The SDK's 9000 is never taken as "paid" by itself: the server's status decides, and the server only believes
 * Alipay (its notification, or a query the server makes itself).
 *
 * Works in an APICloud page (a WebView: fetch is there, api.require gives the native module) and under Node 20+
 * (fetch is global), which is how tests/e2e/test_client_examples.py runs it against the local stack.
 */
"use strict";

// What the app does after each resultStatus (docs/clients.md, "The SDK's result codes").
var RESULT_CODES = {
  "9000": { meaning: "paid, says the SDK", then: "report, then poll until the server says paid" },
  "8000": { meaning: "processing: may be paid", then: "report (the server asks Alipay), then poll" },
  "6001": { meaning: "cancelled by the buyer", then: "report; the order still waits: offer to pay again" },
  "6002": { meaning: "network error: may be paid", then: "report (the server asks Alipay), then poll" },
  "6004": { meaning: "outcome unknown: may be paid", then: "report (the server asks Alipay), then poll" },
  "5000": { meaning: "duplicate request: a payment of this order is already under way", then: "report, then poll; never pay twice" },
  "4000": { meaning: "failed: Alipay refused the payment", then: "report; show the memo; a new order to try again" },
};
// The codes after which money may have moved: the app waits for the server's word.
var MAY_BE_PAID = ["9000", "8000", "6002", "6004", "5000"];
var PAID = ["TRADE_SUCCESS", "TRADE_FINISHED"];

function randomKey() {
  // An Idempotency-Key per checkout: a retried POST /orders gets the same order back, never a second one.
  var bytes = new Uint8Array(16);
  (globalThis.crypto || require("crypto").webcrypto).getRandomValues(bytes);
  return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
}

function ApiError(status, body) {
  // The API's errors are {"code", "message", "field"?}; the message says what to fix.
  var error = new Error((body && body.message) || "HTTP " + status);
  error.status = status;
  error.code = body && body.code;
  error.field = body && body.field;
  return error;
}

async function call(apiUrl, idToken, method, path, body, headers) {
  var response = await fetch(apiUrl.replace(/\/$/, "") + path, {
    method: method,
    headers: Object.assign(
      { Authorization: "Bearer " + idToken, Accept: "application/json" },
      body === undefined ? {} : { "Content-Type": "application/json" },
      headers || {}
    ),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  var text = await response.text();
  var parsed = text ? JSON.parse(text) : null;
  if (!response.ok) throw ApiError(response.status, parsed);
  return parsed;
}

// POST /orders: the server prices the lines from the catalogue and signs the order; the app never sends amounts.
function createOrder(apiUrl, idToken, items, currency, idempotencyKey) {
  // Only sku and quantity go to the server: prices are the server's to decide (a price sent would be 422).
  var lines = items.map(function (line) { return { sku: line.sku, quantity: line.quantity || 1 }; });
  var body = { items: lines };
  if (currency) body.currency = currency;
  return call(apiUrl, idToken, "POST", "/orders", body, { "Idempotency-Key": idempotencyKey || randomKey() });
}

// alipayGlobal.payOrder, as a promise of the SDK's {resultStatus, result, memo}. APICloud modules call back with
// (ret, err); the SDK's fields may come in either, and resultStatus as a number or a string.
function payOrder(alipayGlobal, orderInfo) {
  return new Promise(function (resolve) {
    alipayGlobal.payOrder({ orderInfo: orderInfo }, function (ret, err) {
      var answer = (ret && ret.resultStatus !== undefined ? ret : err) || {};
      resolve({
        resultStatus: String(answer.resultStatus === undefined ? "" : answer.resultStatus),
        result: typeof answer.result === "string" ? answer.result : "",
        memo: typeof answer.memo === "string" ? answer.memo : "",
      });
    });
  });
}

// POST /orders/{out_trade_no}/client-result: {verified, status, reason?}. It never marks the order paid itself.
function reportResult(apiUrl, idToken, outTradeNo, sdkResult) {
  return call(apiUrl, idToken, "POST", "/orders/" + encodeURIComponent(outTradeNo) + "/client-result", sdkResult);
}

function getOrder(apiUrl, idToken, outTradeNo) {
  return call(apiUrl, idToken, "GET", "/orders/" + encodeURIComponent(outTradeNo));
}

function sleep(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}

// GET /orders/{out_trade_no} until the order leaves WAIT_BUYER_PAY or timeoutMs passes; the last order seen.
async function waitForSettled(apiUrl, idToken, outTradeNo, timeoutMs, intervalMs) {
  var deadline = Date.now() + timeoutMs;
  for (;;) {
    var order = await getOrder(apiUrl, idToken, outTradeNo);
    if (order.status !== "WAIT_BUYER_PAY" || Date.now() >= deadline) return order;
    await sleep(intervalMs);
  }
}

/*
 * One checkout. options: apiUrl, idToken (the user pool's ID token), items ([{sku, quantity}]), currency?,
 * alipayGlobal? (default api.require("alipayGlobal")), timeoutMs? (how long to wait for the server's word, 30 s),
 * intervalMs? (1 s). Resolves to {outcome, outTradeNo, resultStatus, memo, report, order} where outcome is
 *   "paid"       the server says TRADE_SUCCESS or TRADE_FINISHED: show the receipt
 *   "pending"    money may have moved but the server has no word yet: "we are confirming your payment";
 *                check the order again later (GET /orders/{out_trade_no}), never ask the buyer to pay again
 *   "cancelled"  the buyer left the cashier (6001): the order still waits; offer "pay again" with the same order
 *   "failed"     Alipay refused it (4000): show the memo; to retry, start a new checkout (a new order)
 *   "closed"     the order was closed (unpaid past its timeout): start a new checkout
 */
async function checkout(options) {
  var alipayGlobal = options.alipayGlobal || globalThis.api.require("alipayGlobal");
  var timeoutMs = options.timeoutMs === undefined ? 30000 : options.timeoutMs;
  var intervalMs = options.intervalMs === undefined ? 1000 : options.intervalMs;
  var order = await createOrder(options.apiUrl, options.idToken, options.items, options.currency, options.idempotencyKey);
  var sdk = await payOrder(alipayGlobal, order.order_info);
  // Always report: for 8000/6002/6004 (and a 9000 the server has not heard of yet) this makes the server ask Alipay.
  var report = await reportResult(options.apiUrl, options.idToken, order.out_trade_no, sdk);
  var latest = { status: report.status };
  if (MAY_BE_PAID.indexOf(sdk.resultStatus) >= 0 || !(sdk.resultStatus in RESULT_CODES)) {
    latest = await waitForSettled(options.apiUrl, options.idToken, order.out_trade_no, timeoutMs, intervalMs);
  }
  var outcome;
  if (PAID.indexOf(latest.status) >= 0) outcome = "paid";
  else if (latest.status === "TRADE_CLOSED") outcome = "closed";
  else if (sdk.resultStatus === "6001") outcome = "cancelled";
  else if (sdk.resultStatus === "4000") outcome = "failed";
  else outcome = "pending"; // 9000/8000/6002/6004/5000 or an unknown code, and the server has no word yet
  return {
    outcome: outcome,
    outTradeNo: order.out_trade_no,
    resultStatus: sdk.resultStatus,
    memo: sdk.memo,
    report: report,
    order: latest,
  };
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { checkout: checkout, createOrder: createOrder, payOrder: payOrder, reportResult: reportResult,
    getOrder: getOrder, waitForSettled: waitForSettled, RESULT_CODES: RESULT_CODES, MAY_BE_PAID: MAY_BE_PAID };
}
