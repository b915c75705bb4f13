"""zoo.schema.setting records the default, the text of the valid values, the constraints and
whether a value trains, and trains_only keeps exactly the settings that train, at every depth.

The classes are built inside each test on purpose: the zoo's own settings classes are built
when their modules are imported, once, so a change to ``setting`` made after the import (as
mutmut makes one, in a forked child) would never reach them.
"""

import pytest
from pydantic import Field, ValidationError

from zoo.schema import Settings, describe_errors, field_trains, setting, trains_only


def probe_classes():
    class Display(Settings):
        width: int = setting(80, "an integer >= 10", trains=False, ge=10)
        seed: int = setting(0, "an integer >= 0", ge=0)

    class Probe(Settings):
        rate: float = setting(0.5, "a number in (0, 1)", gt=0.0, lt=1.0)
        shown: bool = setting(True, "true or false", trains=False)
        size: int = setting(..., "an integer >= 1", ge=1)
        bare: int = setting(3)
        display: Display = setting(Display(), "the display's settings")
        # declared with pydantic's own Field, extra schema but no "trains": it trains
        plain: int = Field(1, json_schema_extra={"example": 2})

    return Probe, Display


def test_defaults_are_kept_and_a_setting_without_one_is_required():
    Probe, _ = probe_classes()
    probe = Probe(size=2)
    assert (probe.rate, probe.shown, probe.bare, probe.display.width) == (0.5, True, 3, 80)
    with pytest.raises(ValidationError) as error:
        Probe()
    assert [e["type"] for e in error.value.errors()] == ["missing"]


def test_the_valid_text_is_the_fields_description_and_empty_without_one():
    Probe, _ = probe_classes()
    assert Probe.model_fields["rate"].description == "a number in (0, 1)"
    assert not Probe.model_fields["bare"].description


def test_a_setting_without_valid_text_words_pydantics_reason_not_a_placeholder():
    Probe, _ = probe_classes()
    with pytest.raises(ValidationError) as error:
        Probe(size=1, bare="3")
    assert describe_errors(error.value, Probe, "probe") == [
        "probe.bare = '3' is not valid: input should be a valid integer."
    ]


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_the_constraints_are_checked(rate):
    Probe, _ = probe_classes()
    with pytest.raises(ValidationError):
        Probe(size=1, rate=rate)


def test_a_setting_trains_unless_it_says_trains_false():
    Probe, _ = probe_classes()
    trains = {name: field_trains(info) for name, info in Probe.model_fields.items()}
    assert trains == {"rate": True, "shown": False, "size": True, "bare": True, "display": True, "plain": True}


def test_trains_only_leaves_out_display_settings_at_every_depth():
    Probe, _ = probe_classes()
    values = Probe(size=2).model_dump()
    assert trains_only(Probe, values) == {
        "rate": 0.5,
        "size": 2,
        "bare": 3,
        "display": {"seed": 0},
        "plain": 1,
    }
