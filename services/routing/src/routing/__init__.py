"""Routing: choose the agencies for a case and publish one referral to each."""
