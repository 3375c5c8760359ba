"""Errors of the learning core: one class per kind of user mistake, each with a one-line message.

Nodes and the CLI catch :class:`TinyclError` and print ``str(err)``; nothing else is needed to
report a bad input, so every message names the problem and the offending value.
"""


class TinyclError(ValueError):
    """Base of every error tinycl raises for bad input; its message is one line."""


class InputError(TinyclError):
    """A sample, label or parameter has the wrong shape, type or value (NaN, inf, negative id...)."""


class StateError(TinyclError):
    """A saved state cannot be loaded: other format, other version, other kind or shapes."""


class OtherConfigError(TinyclError):
    """A sound saved state of another configuration than the node's (another fleet, head kind or extractor): the node
    stops and the file stays (moved aside, it was lost to whoever started again with the right configuration).

    ``what_to_do`` ends the node's line; empty when the message itself says what to start the node with."""

    what_to_do: str = ""


class ExtractorMismatchError(OtherConfigError):
    """Something was built on another frozen extractor than the one in use (hash differs). A state file of such
    a head is one kind of another configuration's state: it stays, and the node stops."""

    what_to_do = "start the node with the model it was learned on, or learn afresh in another state_dir"


class DivergedError(InputError):
    """Training made a weight NaN or inf (a learning rate too high for the features): the batch was undone."""
