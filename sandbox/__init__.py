"""The Alipay sandbox: plays Alipay for the local stack (pays, signs, notifies, answers its gateway). Not in Lambda."""
