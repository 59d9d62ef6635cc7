"""The CDK stacks of Alipay app payments on AWS."""
