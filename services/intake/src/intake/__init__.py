"""Intake: record a case once, store it, publish case.submitted through the outbox."""
