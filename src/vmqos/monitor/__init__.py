"""Sampling, rates, accounting and detection: what the limits do to real traffic."""
