"""``python -m zoo``: compose the Hydra config, run it, print the summary."""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def config_dir() -> str:
    """The configs: ``zoo/conf`` inside an installed wheel, ``conf/`` beside the package in a
    checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise SystemExit(
        f"zoo: no Hydra configs found in {package / 'conf'} or {package.parent / 'conf'}"
    )


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from zoo.app import format_summary, run  # imported here so that --help stays fast
    from zoo.errors import ZooError

    try:
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
    except ZooError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"zoo: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(format_summary(summary))


if __name__ == "__main__":
    main()
