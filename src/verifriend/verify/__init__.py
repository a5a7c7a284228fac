"""Verification: complete and exact procedures built on the bound engine (MILP, BaB)."""
