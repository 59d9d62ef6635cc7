"""Adapters around injected boto3 clients and HTTP: they return domain values and raise the ports' errors."""
