/*
 * Runs docs/examples/apicloud/checkout.js under Node against a local stack, as an APICloud app would run it, with
 * only the native module stubbed: api.require("alipayGlobal") gives an object whose payOrder does what the native
 * Alipay SDK does, paying at the stack's Alipay sandbox over HTTP (POST /sandbox/pay). Every call to the API is real.
 *
 * Input: one JSON object in the environment variable CHECKOUT: {apiUrl, sandboxUrl, idToken, items, currency?,
 * mode, timeoutMs?}, mode one of
 *   success | cancel | pending  the buyer's outcome at the sandbox (9000, 6001, 8000)
 *   tampered                    the order string altered on the way (the sandbox refuses it: 4000)
 *   forged                      no payment at all: the module answers a made-up 9000 (a number, as some modules do)
 * Output: checkout()'s result as JSON on stdout, with the calls the module got.
 */
"use strict";

const path = require("path");

const input = JSON.parse(process.env.CHECKOUT);
const calls = [];

const alipayGlobal = {
  payOrder(params, callback) {
    calls.push(Object.keys(params));
    const orderInfo = params.orderInfo;
    if (input.mode === "forged") {
      const response = { code: "10000", msg: "Success", out_trade_no: "whatever", total_amount: "0.01" };
      const result = JSON.stringify({ alipay_trade_app_pay_response: response, sign: "Zm9yZ2Vk", sign_type: "RSA2" });
      setTimeout(() => callback({ resultStatus: 9000, result: result, memo: "" }, null), 0);
      return;
    }
    let sent = orderInfo;
    let outcome = input.mode;
    if (input.mode === "tampered") {
      sent = orderInfo.replace(/(total_amount%22%3A%22)[0-9.]+/, "$10.01");
      outcome = "success";
    }
    fetch(input.sandboxUrl + "/sandbox/pay", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ order_info: sent, outcome: outcome }),
    })
      .then((response) => response.json())
      // The native SDK calls back with its result; on failure codes some modules put it in err.
      .then((sdk) => (sdk.resultStatus === "9000" ? callback(sdk, null) : callback(null, sdk)))
      .catch((error) => callback(null, { resultStatus: "6002", result: "", memo: String(error) }));
  },
};

globalThis.api = {
  require(name) {
    if (name !== "alipayGlobal") throw new Error("only alipayGlobal is stubbed, not " + name);
    return alipayGlobal;
  },
};

const example = require(path.resolve(__dirname, "../../../docs/examples/apicloud/checkout.js"));

example
  .checkout({
    apiUrl: input.apiUrl,
    idToken: input.idToken,
    items: input.items,
    currency: input.currency,
    timeoutMs: input.timeoutMs === undefined ? 15000 : input.timeoutMs,
    intervalMs: 200,
  })
  .then((result) => {
    process.stdout.write(JSON.stringify(Object.assign(result, { moduleCalls: calls })) + "\n");
  })
  .catch((error) => {
    process.stdout.write(JSON.stringify({ error: String(error), code: error.code, status: error.status }) + "\n");
    process.exitCode = 1;
  });
