"""Plumbing shared by the services: settings, storage, messaging, telemetry, logging. No domain rules."""
