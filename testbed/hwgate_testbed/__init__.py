"""The hwgate test bed: a virtual PIV card on real pcscd + vpcd and a SoftHSM2 token."""
