"""Agency gateway: deliver each referral to its agency in the channel the catalogue names."""
