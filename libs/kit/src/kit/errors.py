"""Errors the kit's edges translate, in a module that imports nothing: an HTTP route answers them with a problem
(kit/http.py), a consumer waits on them (kit/outages.py)."""


class DependencyUnavailable(Exception):
    """A dependency of the system's own (intake, say) cannot serve the record now. The consumer waits and tries the
    same record again, for as long as it takes: this is never the record's fault nor an agency's."""
