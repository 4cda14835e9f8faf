"""The phone simulator: redeem a QR payload for a derived PIV credential.

It makes its own P-256 key pair (the private key never leaves it), sends a
CSR with the activation code, and trusts the result only after verifying the
chain up to the HSM issuing CA it was configured with.
"""
