"""hwgated: the hardware-gateway daemon (PC/SC readers and PKCS#11 HSMs behind gRPC)."""

__version__ = "0.1.0"
