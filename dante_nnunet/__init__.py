"""dante-nnunet: DANTE (AAAI 2026) as an nnU-Net v2 plugin."""
__version__ = "0.1.0"
