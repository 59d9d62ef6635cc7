"""The local stack: AWS emulation, the API, Lambda's event-source mappings and the Alipay sandbox on one machine."""
