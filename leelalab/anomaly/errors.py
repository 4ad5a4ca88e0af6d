"""The error every bad input to the anomaly-detection tools raises."""

from __future__ import annotations

from leelalab.errors import LeelaLabError


class AnomalyError(LeelaLabError):
    """A task, feature store, detector or run is missing, foreign, or asked for something it
    cannot give (an unknown detector or layer, too few trusted samples, ...)."""
