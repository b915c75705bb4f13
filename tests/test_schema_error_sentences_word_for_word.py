"""zoo.schema.describe_errors word for word.

Each kind of failure gives its own sentence: a value out of range at any depth, an item of a
list, an unknown key with and without a close match, a missing setting, a class's own
cross-field check, a validator's ValueError, and a setting declared without its valid values
(pydantic's message then). A long value is cut to 80 characters. tests/test_config.py only
checks that a message starts with the key and holds the word "valid", which every sentence
here does, right or wrong.
"""

import pytest
from pydantic import ValidationError, field_validator

from zoo.config import RunSettings
from zoo.data.old_faithful import OldFaithfulSettings
from zoo.models.bnn import BNNSettings
from zoo.optim import AdamSettings
from zoo.schedules import SCHEDULES
from zoo.schema import Settings, describe_errors, setting
from zoo.train import TrainSettings

ADAM = "zoo.optim.Adam"


class Probe(Settings):
    """Settings made for these tests: a bounded text, and a setting without its valid values."""

    label: str = setting("a", "a text of at most 3 characters", max_length=3)
    count: int = setting(1, gt=0)
    size: int = setting(...)
    even: int = setting(2, "an even integer")

    @field_validator("even")
    @classmethod
    def _even(cls, even: int) -> int:
        assert even % 2 == 0, "odd"
        return even


def sentences(cls, values, prefix):
    with pytest.raises(ValidationError) as error:
        cls.model_validate(values)
    return describe_errors(error.value, cls, prefix)


def test_a_top_level_value_out_of_range_is_named_by_its_bare_key():
    assert sentences(RunSettings, {"seed": -1}, "") == [
        "seed = -1 is not valid: it must be an integer from 0 to 2**32 - 1."
    ]


def test_a_value_two_levels_down_is_named_by_its_full_key_and_its_own_rule():
    assert sentences(AdamSettings, {"_target_": ADAM, "optim_args": {"lr": -1}}, "optim") == [
        "optim.optim_args.lr = -1 is not valid: it must be a finite number > 0."
    ]


def test_an_optional_settings_group_describes_its_own_keys():
    assert sentences(AdamSettings, {"_target_": ADAM, "clip_args": {"clip_norm": -1}}, "optim") == [
        "optim.clip_args.clip_norm = -1 is not valid: it must be a finite number > 0, or null."
    ]


def test_an_item_of_a_list_is_named_by_its_index_and_described_by_its_list():
    values = {"_target_": ADAM, "optim_args": {"betas": [0.9, 1.5]}}
    assert sentences(AdamSettings, values, "optim") == [
        "optim.optim_args.betas[1] = 1.5 is not valid: "
        "it must be two numbers in [0, 1), e.g. [0.9, 0.999]."
    ]


def test_a_value_of_the_wrong_type_is_shown_as_written():
    assert sentences(TrainSettings, {"epochs": "3"}, "trainer") == [
        "trainer.epochs = '3' is not valid: it must be an integer >= 1."
    ]


def test_an_unknown_key_with_a_close_match_suggests_it_and_lists_the_valid_keys():
    values = {"_target_": ADAM, "optim_args": {"bets": [0.9, 0.9]}}
    assert sentences(AdamSettings, values, "optim") == [
        "optim.optim_args.bets is not a setting (did you mean optim.optim_args.betas?); "
        "valid: lr, betas, eps, weight_decay, amsgrad."
    ]


def test_an_unknown_key_between_two_bad_values_keeps_all_three_sentences():
    values = {"_target_": ADAM, "optim_args": {"lr": -1, "zzz": 1}, "implementation": "x"}
    assert sentences(AdamSettings, values, "optim") == [
        "optim.optim_args.lr = -1 is not valid: it must be a finite number > 0.",
        "optim.optim_args.zzz is not a setting; valid: lr, betas, eps, weight_decay, amsgrad.",
        "optim.implementation = 'x' is not valid: it must be fused, foreach or single_tensor "
        "(one torch.optim.Adam over all parameters) or per_parameter (pyro.optim.Adam).",
    ]


def test_a_missing_setting_says_what_to_set_it_to():
    assert sentences(SCHEDULES["linear"], {"name": "linear"}, "anneal") == [
        "anneal.warmup_epochs is missing: it must be set to a number of epochs >= 0."
    ]


def test_a_missing_setting_without_valid_values_asks_for_a_value():
    assert sentences(Probe, {}, "probe") == ["probe.size is missing: it must be set to a value."]


def test_a_setting_without_valid_values_words_pydantics_reason():
    assert sentences(Probe, {"size": 1, "count": 0}, "probe") == [
        "probe.count = 0 is not valid: input should be greater than 0."
    ]


def test_a_cross_field_check_of_the_class_itself_names_the_setting_at_fault():
    assert sentences(OldFaithfulSettings, {"folds": 5, "fold": 5}, "data") == [
        "data.fold = 5 is not valid: it must be 0 to 4 with folds = 5."
    ]


def test_a_cross_field_check_of_a_nested_class_names_the_setting_under_it():
    assert sentences(TrainSettings, {"stop": {"patience": 3}}, "trainer") == [
        "trainer.stop.metric = None is not valid: trainer.stop.patience needs the metric to "
        "watch: set trainer.stop.metric to one of the model's periodic test metrics, "
        "e.g. test/elbo."
    ]


def test_a_validators_own_error_is_its_reason(tmp_path):
    missing = str(tmp_path / "none")
    assert sentences(OldFaithfulSettings, {"root": missing}, "data") == [
        f"data.root = {missing!r} is not valid: it must be an existing folder that holds the "
        "data files, or null to look in the cache and system folders."
    ]


@pytest.mark.parametrize(
    "letters,shown",
    [
        (78, repr("x" * 78)),  # a repr of 80 characters is shown whole
        (79, repr("x" * 79)[:77] + "..."),  # one of 81 is cut to 77 and "..."
        (200, "'" + "x" * 76 + "..."),
    ],
)
def test_a_value_longer_than_80_characters_is_cut_to_80(letters, shown):
    assert len(shown) == 80
    assert sentences(Probe, {"size": 1, "label": "x" * letters}, "probe") == [
        f"probe.label = {shown} is not valid: it must be a text of at most 3 characters."
    ]


def test_a_failed_assertion_is_described_by_the_valid_values_not_its_own_text():
    # only a ValueError's text is meant for the user; an assertion's is the code's own
    assert sentences(Probe, {"size": 1, "even": 3}, "probe") == [
        "probe.even = 3 is not valid: it must be an even integer."
    ]


def test_a_bad_key_inside_a_mapping_setting_is_described_by_the_mapping():
    # pydantic places it at (periodic_evaluation, 1, "[key]"): an index, then a name that
    # is no setting of any class
    (sentence,) = sentences(BNNSettings, {"periodic_evaluation": {1: 5}}, "model")
    assert sentence.startswith("model.periodic_evaluation[1]")
    assert sentence.endswith(
        "= 1 is not valid: it must be a mapping of evaluation settings to override."
    )
