"""Test helpers for Kubernetes targets: a kmock-based cluster emulator (see harness.py)."""
