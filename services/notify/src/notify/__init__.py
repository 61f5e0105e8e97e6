"""Notify: every referral's state from acknowledgements and events, deadlines that remind and escalate,
notifications to caseworkers and (only as their contact rules allow) victims, and each case's timeline and status."""
