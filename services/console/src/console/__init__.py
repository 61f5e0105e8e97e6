"""The web console: caseworkers, agencies and operators work through pages that call the services' APIs with the
signed-in user's own token; the console keeps no data of its own."""
