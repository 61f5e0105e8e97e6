"""casectl: follow a case through the system from the command line (reads notify's timeline API)."""
