// Paying an order from an Android app with the native Alipay SDK (docs/clients.md). Not run here: it needs the
// Android SDK and Alipay's alipaysdk AAR; tests/unit/test_client_examples.py checks that every route, field and
// result code it uses is the one docs/openapi.yaml documents.
//
// The flow: create the order as the signed-in buyer (POST /orders with the user pool's ID token), hand its
// order_info to PayTask.payV2, report what the SDK returned (POST /orders/{out_trade_no}/client-result), then ask
// the server (GET /orders/{out_trade_no}) until the order is settled. The SDK's 9000 is never "paid" by itself.
package com.example.shop.pay

import android.app.Activity
import com.alipay.sdk.app.PayTask
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.delay
import kotlinx.coroutines.withContext
import org.json.JSONArray
import org.json.JSONObject
import java.net.HttpURLConnection
import java.net.URL
import java.util.UUID

/** What to tell the buyer. Only [Paid] means paid, and only because the server said so. */
sealed class CheckoutOutcome {
    abstract val outTradeNo: String

    /** The server says TRADE_SUCCESS or TRADE_FINISHED: show the receipt. */
    data class Paid(override val outTradeNo: String) : CheckoutOutcome()

    /** Money may have moved but the server has no word yet: "we are confirming your payment". Check the order
     *  again later; never ask the buyer to pay again for it. */
    data class Pending(override val outTradeNo: String) : CheckoutOutcome()

    /** 6001: the buyer left the cashier. The order still waits: offer to pay it again (payV2 with the same order_info). */
    data class Cancelled(override val outTradeNo: String) : CheckoutOutcome()

    /** 4000: Alipay refused the payment. Show [memo]; to try again, start a new checkout (a new order). */
    data class Failed(override val outTradeNo: String, val memo: String) : CheckoutOutcome()

    /** The order was closed unpaid (past its timeout): start a new checkout. */
    data class Closed(override val outTradeNo: String) : CheckoutOutcome()
}

/** The API's error `{"code", "message", "field"?}`: [message] says what to fix. */
class ApiException(val status: Int, val code: String?, override val message: String, val field: String?) :
    Exception(message)

class AlipayCheckout(
    private val apiUrl: String, // deployed: https://<api>.execute-api.<region>.amazonaws.com/api
    private val idToken: () -> String, // the Cognito user pool's ID token of the signed-in buyer
) {
    companion object {
        // What each resultStatus means, and what the app does (docs/clients.md, "The SDK's result codes").
        val RESULT_CODES = mapOf(
            "9000" to "paid, says the SDK: report, then poll until the server says paid",
            "8000" to "processing, may be paid: report (the server asks Alipay), then poll",
            "6001" to "cancelled by the buyer: report; the order still waits",
            "6002" to "network error, may be paid: report (the server asks Alipay), then poll",
            "6004" to "outcome unknown, may be paid: report (the server asks Alipay), then poll",
            "5000" to "duplicate request, a payment is already under way: report, then poll; never pay twice",
            "4000" to "failed: report; show the memo; a new order to try again",
        )
        private val MAY_BE_PAID = setOf("9000", "8000", "6002", "6004", "5000")
        private val PAID = setOf("TRADE_SUCCESS", "TRADE_FINISHED")
    }

    /** One checkout of [items] (sku to quantity). Call from a coroutine; the SDK runs off the main thread. */
    suspend fun checkout(activity: Activity, items: Map<String, Int>, currency: String? = null): CheckoutOutcome {
        val lines = JSONArray()
        items.forEach { (sku, quantity) -> lines.put(JSONObject().put("sku", sku).put("quantity", quantity)) }
        val body = JSONObject().put("items", lines)
        if (currency != null) body.put("currency", currency)
        // One Idempotency-Key per checkout: a retried POST gets the same order back, never a second one.
        val order = call("POST", "/orders", body, mapOf("Idempotency-Key" to UUID.randomUUID().toString()))
        val outTradeNo = order.getString("out_trade_no")

        // payV2 blocks until the buyer is done (and shows Alipay's UI itself): never on the main thread.
        val sdk: Map<String, String> = withContext(Dispatchers.IO) {
            PayTask(activity).payV2(order.getString("order_info"), true)
        }
        val resultStatus = sdk["resultStatus"].orEmpty()

        // Always report: for 8000/6002/6004 (and a 9000 the server has not heard of yet) the server asks Alipay.
        val result = JSONObject()
            .put("resultStatus", resultStatus)
            .put("result", sdk["result"].orEmpty())
            .put("memo", sdk["memo"].orEmpty())
        val report = call("POST", "/orders/$outTradeNo/client-result", result)
        var status = report.getString("status")
        if (resultStatus in MAY_BE_PAID || resultStatus !in RESULT_CODES) {
            status = waitForSettled(outTradeNo)
        }
        return when {
            status in PAID -> CheckoutOutcome.Paid(outTradeNo)
            status == "TRADE_CLOSED" -> CheckoutOutcome.Closed(outTradeNo)
            resultStatus == "6001" -> CheckoutOutcome.Cancelled(outTradeNo)
            resultStatus == "4000" -> CheckoutOutcome.Failed(outTradeNo, sdk["memo"].orEmpty())
            else -> CheckoutOutcome.Pending(outTradeNo)
        }
    }

    /** GET /orders/{out_trade_no} until it leaves WAIT_BUYER_PAY or [timeoutMillis] pass; the last status seen. */
    suspend fun waitForSettled(outTradeNo: String, timeoutMillis: Long = 30_000, intervalMillis: Long = 1_000): String {
        val deadline = System.currentTimeMillis() + timeoutMillis
        while (true) {
            val status = call("GET", "/orders/$outTradeNo").getString("status")
            if (status != "WAIT_BUYER_PAY" || System.currentTimeMillis() >= deadline) return status
            delay(intervalMillis)
        }
    }

    private suspend fun call(
        method: String,
        path: String,
        body: JSONObject? = null,
        headers: Map<String, String> = emptyMap(),
    ): JSONObject = withContext(Dispatchers.IO) {
        val connection = URL(apiUrl.trimEnd('/') + path).openConnection() as HttpURLConnection
        try {
            connection.requestMethod = method
            connection.setRequestProperty("Authorization", "Bearer ${idToken()}")
            connection.setRequestProperty("Accept", "application/json")
            headers.forEach { (name, value) -> connection.setRequestProperty(name, value) }
            if (body != null) {
                connection.doOutput = true
                connection.setRequestProperty("Content-Type", "application/json")
                connection.outputStream.use { it.write(body.toString().toByteArray(Charsets.UTF_8)) }
            }
            val status = connection.responseCode
            val stream = if (status < 400) connection.inputStream else connection.errorStream
            val text = stream?.bufferedReader(Charsets.UTF_8)?.use { it.readText() }.orEmpty()
            if (status >= 400) {
                val error = runCatching { JSONObject(text) }.getOrNull()
                throw ApiException(
                    status,
                    error?.optString("code"),
                    error?.optString("message") ?: "HTTP $status",
                    error?.optString("field")?.takeIf { it.isNotEmpty() },
                )
            }
            JSONObject(text)
        } finally {
            connection.disconnect()
        }
    }
}
