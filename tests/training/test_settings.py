"""TrainSettings: the flat, validated settings behind `leelalab train`'s options."""

from __future__ import annotations

import pytest

from leelalab.runs.experiment import SettingsError
from leelalab.training.settings import TrainSettings
from leelalab.training.students import StudentConfig
from leelalab.training.trainer import TrainConfig


def test_the_command_defaults_are_the_library_defaults() -> None:
    assert TrainSettings().config() == TrainConfig()


def test_student_fields_reach_the_student() -> None:
    config = TrainSettings(family="resnet", blocks=3, filters=8, smolgen=(4, 8, 16)).config()
    assert config.student == StudentConfig(
        family="resnet", blocks=3, filters=8, smolgen=(4, 8, 16), policy_size=128
    )
    assert TrainSettings(d_model=64).config().student.policy_size == 64


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"sample_rate": 0.0}, "--sample-rate"),
        ({"sample_rate": 1.5}, "--sample-rate"),
        ({"learning_rate": 0.0}, "--learning-rate"),
        ({"smolgen": (4, 8)}, "--smolgen"),
        ({"opening_temperature": float("inf")}, "--opening-temperature"),
    ],
)
def test_out_of_range_settings_name_their_option(changes, option) -> None:
    with pytest.raises(SettingsError, match=option):
        TrainSettings(**changes)
