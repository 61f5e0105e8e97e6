"""Agency simulator: plays the agencies' side of referrals (webhook in, acknowledgement out) for demos and tests."""
