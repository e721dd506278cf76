"""The control room: a web page to watch, steer and understand runs (``flexrl ui``, ``flexrl run ui=true``)."""
