// Paying an order from an iOS app with the native Alipay SDK (docs/clients.md). Not run here: it needs Xcode and
// Alipay's AlipaySDK framework; tests/unit/test_client_examples.py checks that every route, field and result code
// it uses is the one docs/openapi.yaml documents.
//
// The flow: create the order as the signed-in buyer (POST /orders with the user pool's ID token), hand its
// order_info to AlipaySDK.defaultService().payOrder, report what the SDK returned
// (POST /orders/{out_trade_no}/client-result), then ask the server (GET /orders/{out_trade_no}) until the order is
// settled. The SDK's 9000 is never "paid" by itself.
//
// When the Alipay app is installed, payOrder's callback is not called: Alipay opens your app again with a URL
// (host "safepay") that carries the result. Register a URL scheme (the fromScheme below) and pass such URLs to
// AlipayCheckout.shared.handleOpenURL from application(_:open:options:) or scene(_:openURLContexts:).
import AlipaySDK
import Foundation

/// What to tell the buyer. Only `.paid` means paid, and only because the server said so.
enum CheckoutOutcome: Equatable {
    /// The server says TRADE_SUCCESS or TRADE_FINISHED: show the receipt.
    case paid(outTradeNo: String)
    /// Money may have moved but the server has no word yet: "we are confirming your payment". Check the order
    /// again later; never ask the buyer to pay again for it.
    case pending(outTradeNo: String)
    /// 6001: the buyer left the cashier. The order still waits: offer to pay it again (the same order_info).
    case cancelled(outTradeNo: String)
    /// 4000: Alipay refused the payment. Show the memo; to try again, start a new checkout (a new order).
    case failed(outTradeNo: String, memo: String)
    /// The order was closed unpaid (past its timeout): start a new checkout.
    case closed(outTradeNo: String)
}

/// The API's error `{"code", "message", "field"?}`: `message` says what to fix.
struct ApiError: Error {
    let status: Int
    let code: String?
    let message: String
    let field: String?
}

@MainActor
final class AlipayCheckout {
    static let shared = AlipayCheckout(
        apiURL: URL(string: "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/api")!,
        scheme: "myshop",
        idToken: { "" } // the Cognito user pool's ID token of the signed-in buyer (from your sign-in code)
    )

    /// What each resultStatus means, and what the app does (docs/clients.md, "The SDK's result codes").
    static let resultCodes: [String: String] = [
        "9000": "paid, says the SDK: report, then poll until the server says paid",
        "8000": "processing, may be paid: report (the server asks Alipay), then poll",
        "6001": "cancelled by the buyer: report; the order still waits",
        "6002": "network error, may be paid: report (the server asks Alipay), then poll",
        "6004": "outcome unknown, may be paid: report (the server asks Alipay), then poll",
        "5000": "duplicate request, a payment is already under way: report, then poll; never pay twice",
        "4000": "failed: report; show the memo; a new order to try again",
    ]
    private static let mayBePaid: Set<String> = ["9000", "8000", "6002", "6004", "5000"]
    private static let paid: Set<String> = ["TRADE_SUCCESS", "TRADE_FINISHED"]

    private let apiURL: URL
    private let scheme: String
    private let idToken: () -> String
    private var waiting: CheckedContinuation<[AnyHashable: Any], Never>?

    init(apiURL: URL, scheme: String, idToken: @escaping () -> String) {
        self.apiURL = apiURL
        self.scheme = scheme
        self.idToken = idToken
    }

    /// One checkout of `items` (sku to quantity).
    func checkout(items: [String: Int], currency: String? = nil) async throws -> CheckoutOutcome {
        var body: [String: Any] = ["items": items.map { ["sku": $0.key, "quantity": $0.value] }]
        if let currency { body["currency"] = currency }
        // One Idempotency-Key per checkout: a retried POST gets the same order back, never a second one.
        let order = try await call("POST", "/orders", body: body, headers: ["Idempotency-Key": UUID().uuidString])
        guard let outTradeNo = order["out_trade_no"] as? String, let orderInfo = order["order_info"] as? String else {
            throw ApiError(status: 0, code: nil, message: "the order has no order_info", field: nil)
        }

        let sdk = await pay(orderInfo: orderInfo)
        let resultStatus = sdk["resultStatus"].map { "\($0)" } ?? "" // a String, or an NSNumber in some versions
        let memo = sdk["memo"] as? String ?? ""

        // Always report: for 8000/6002/6004 (and a 9000 the server has not heard of yet) the server asks Alipay.
        let result: [String: Any] = ["resultStatus": resultStatus, "result": sdk["result"] as? String ?? "", "memo": memo]
        let report = try await call("POST", "/orders/\(outTradeNo)/client-result", body: result)
        var status = report["status"] as? String ?? ""
        if Self.mayBePaid.contains(resultStatus) || Self.resultCodes[resultStatus] == nil {
            status = try await waitForSettled(outTradeNo: outTradeNo)
        }
        if Self.paid.contains(status) { return .paid(outTradeNo: outTradeNo) }
        if status == "TRADE_CLOSED" { return .closed(outTradeNo: outTradeNo) }
        if resultStatus == "6001" { return .cancelled(outTradeNo: outTradeNo) }
        if resultStatus == "4000" { return .failed(outTradeNo: outTradeNo, memo: memo) }
        return .pending(outTradeNo: outTradeNo)
    }

    /// Pass the URL Alipay opens your app with; true if it was Alipay's result.
    func handleOpenURL(_ url: URL) -> Bool {
        guard url.host == "safepay" else { return false }
        AlipaySDK.defaultService().processOrder(withPaymentResult: url) { [weak self] resultDic in
            Task { @MainActor in self?.finish(resultDic) }
        }
        return true
    }

    /// GET /orders/{out_trade_no} until it leaves WAIT_BUYER_PAY or `timeout` passes; the last status seen.
    func waitForSettled(outTradeNo: String, timeout: TimeInterval = 30, interval: TimeInterval = 1) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let status = try await call("GET", "/orders/\(outTradeNo)")["status"] as? String ?? ""
            if status != "WAIT_BUYER_PAY" || Date() >= deadline { return status }
            try await Task.sleep(nanoseconds: UInt64(interval * 1_000_000_000))
        }
    }

    private func pay(orderInfo: String) async -> [AnyHashable: Any] {
        await withCheckedContinuation { continuation in
            waiting = continuation
            // The callback comes here only when the SDK paid without the Alipay app; otherwise via handleOpenURL.
            AlipaySDK.defaultService().payOrder(orderInfo, fromScheme: scheme) { [weak self] resultDic in
                Task { @MainActor in self?.finish(resultDic) }
            }
        }
    }

    private func finish(_ resultDic: [AnyHashable: Any]?) {
        waiting?.resume(returning: resultDic ?? [:])
        waiting = nil
    }

    private func call(_ method: String, _ path: String, body: [String: Any]? = nil,
                      headers: [String: String] = [:]) async throws -> [String: Any] {
        var request = URLRequest(url: URL(string: apiURL.absoluteString.trimmingCharacters(in: ["/"]) + path)!)
        request.httpMethod = method
        request.setValue("Bearer \(idToken())", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard status < 400 else {
            throw ApiError(status: status, code: json["code"] as? String,
                           message: json["message"] as? String ?? "HTTP \(status)", field: json["field"] as? String)
        }
        return json
    }
}
