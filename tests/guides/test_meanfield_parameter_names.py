"""The names of a MeanField's parameters (its state dict's keys, which a saved guide holds):
``<site>_<parameter>``, the site's non-word characters made ``_``, and a site whose name
collides with an earlier one's numbered by its position."""

import pyro
import pyro.distributions as dist

from zoo.guides import MeanField


def test_site_names_become_parameter_names_and_collisions_are_numbered():
    def model():
        pyro.sample("enc.w", dist.Normal(0.0, 1.0))
        pyro.sample("enc_w", dist.Normal(0.0, 1.0))

    guide = MeanField(model)
    guide()
    assert set(guide.state_dict()) == {
        "enc_w_loc",
        "enc_w_scale_raw",
        "enc_w_1_loc",
        "enc_w_1_scale_raw",
    }
