"""Notify: track every referral's state from the agencies' acknowledgements, and keep each case's timeline."""
