"""Helpers shared by the test tiers (the sandbox fixture, web rows, broker reads)."""
