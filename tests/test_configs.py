"""Every YAML under configs/ loads into its script's config, so none can drift from the code."""

from pathlib import Path

import pytest

from conftest import ROOT, load_script

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def script_for(config: Path) -> str:
    """configs/<offline|finetune>/<algo>/<domain>/<dataset>.yaml -> algorithms/<offline|finetune>/<algo>.py"""
    stage, algorithm = config.relative_to(ROOT / "configs").parts[:2]
    return f"algorithms/{stage}/{algorithm}.py"


def test_every_config_has_a_script():
    assert CONFIGS, "no configs found"
    for config in CONFIGS:
        assert (ROOT / script_for(config)).exists(), f"{config} has no script {script_for(config)}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: str(path.relative_to(ROOT / "configs")))
def test_config_loads_into_its_script(config):
    script = load_script(script_for(config))
    parsed = script.parse_config(script.TrainConfig, ["--config_path", str(config)])
    assert parsed.dataset, "every config names its dataset"
    if "/dt/" in str(config) and config.stem != "quickstart":
        domain = config.parent.name
        assert parsed.dataset == f"{domain}-{config.stem.removesuffix('_v2').replace('_', '-')}-v2"
