/*
 * Runs docs/examples/web/checkout.js under Node against a local stack: CHECKOUT={"step": "create", apiUrl, idToken,
 * items, channel, returnUrl} prints createWebOrder's order; {"step": "confirm", apiUrl, idToken, search} prints
 * confirmReturn's result. The browser's part between the two (the cashier, the return) the Python test walks.
 */
"use strict";

const path = require("path");
const web = require(path.resolve(__dirname, "../../../docs/examples/web/checkout.js"));

const input = JSON.parse(process.env.CHECKOUT);
const step = input.step === "create" ? web.createWebOrder(input) : web.confirmReturn(Object.assign({ intervalMs: 200 }, input));
step
  .then((result) => process.stdout.write(JSON.stringify(result) + "\n"))
  .catch((error) => {
    process.stdout.write(JSON.stringify({ error: String(error), code: error.code, field: error.field }) + "\n");
    process.exitCode = 1;
  });
