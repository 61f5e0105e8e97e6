"""onestop-scaffold: a new agency's catalogue entry and a new channel plugin package (docs/agencies.md)."""
