"""The zoo's models, one file each with its guide beside it, and the registry that builds
them from config."""

from zoo.models.base import ZooModel, data_plate
from zoo.models.bnn import BNN
from zoo.models.gmm import GMM
from zoo.models.vae import VAE

MODELS: dict[str, type[ZooModel]] = {"bnn": BNN, "gmm": GMM, "vae": VAE}

__all__ = ["BNN", "GMM", "MODELS", "VAE", "ZooModel", "data_plate"]
