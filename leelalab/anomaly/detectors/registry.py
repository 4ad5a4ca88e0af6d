"""The detector registry: a detector file registers its class under a name, and
``make_detector(name, ...)`` builds one. Adding a detector is one new file::

    @register_detector
    class MyDetector(StatisticalDetector):
        name = "my-detector"
        ...

plus its import in ``detectors/__init__.py`` (or anywhere before use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from leelalab.anomaly.errors import AnomalyError

if TYPE_CHECKING:
    from leelalab.anomaly.detectors.base import Detector

_DETECTORS: dict[str, type[Detector]] = {}
D = TypeVar("D", bound="type[Detector]")


def register_detector(cls: D) -> D:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _DETECTORS and _DETECTORS[cls.name] is not cls:
        raise ValueError(f"a detector named {cls.name!r} is already registered")
    _DETECTORS[cls.name] = cls
    return cls


def detector_names() -> list[str]:
    return sorted(_DETECTORS)


def detector_class(name: str) -> type[Detector]:
    if name not in _DETECTORS:
        raise AnomalyError(f"unknown detector {name!r}; known: {', '.join(detector_names())}")
    return _DETECTORS[name]


def make_detector(name: str, **kwargs: Any) -> Detector:
    """A new (unfitted) detector by registry name."""
    return detector_class(name)(**kwargs)


__all__ = ["detector_class", "detector_names", "make_detector", "register_detector"]
