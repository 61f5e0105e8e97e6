"""The one error type devstack raises when a piece of the stack cannot be set up or started."""


class DevstackError(RuntimeError):
    """A piece of the local stack failed; the message says which and shows the end of its log."""
