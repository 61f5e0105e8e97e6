"""Contracts shared by the services: events, vocabularies, topics and the agency catalogue format."""
