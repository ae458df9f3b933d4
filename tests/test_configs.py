"""Every YAML under configs/ loads into its script's config, so none can drift from the code."""

from pathlib import Path

import pytest

from conftest import ROOT, load_script

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def script_for(config: Path) -> str:
    """configs/<stage>/<algo>/<domain>/<name>.yaml -> algorithms/<stage>/<algo>.py (stage: offline, finetune, online)"""
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
    assert parsed.dataset or "/online/" in str(config) and parsed.env, (
        "every config names its dataset (online: its env)"
    )
    if "/dt/" in str(config) and config.stem != "quickstart":
        domain = config.parent.name
        assert parsed.dataset == f"{domain}-{config.stem.removesuffix('_v2').replace('_', '-')}-v2"


def test_every_odt_td3_config_has_its_td3_and_odt_baselines():
    """The paper compares ODT+TD3 with TD3 (supervised_coef 0 online, same BC pretraining) and with ODT."""
    script = load_script("algorithms/finetune/odt_td3.py")
    parse = lambda path: vars(script.parse_config(script.TrainConfig, ["--config_path", str(path)]))  # noqa: E731
    main_configs = [path for path in CONFIGS if "/odt_td3/" in str(path) and path.stem.endswith(("_v0", "_v1", "_v2"))]
    assert len(main_configs) == 34
    for path in main_configs:
        method, baseline = parse(path), parse(path.with_name(f"{path.stem}_td3_baseline.yaml"))
        rl_from_start = method["pretrain_alpha"] > 0
        assert (baseline["supervised_coef"], baseline["pretrain_supervised_coef"]) == (
            0.0,
            0.0 if rl_from_start else 1.0,
        )
        assert (method["supervised_coef"], method["pretrain_supervised_coef"]) == (1.0, 1.0)
        ignored = ("name", "group", "supervised_coef", "pretrain_supervised_coef")
        assert {k: v for k, v in method.items() if k not in ignored} == {
            k: v for k, v in baseline.items() if k not in ignored
        }, path
        assert (ROOT / "configs/finetune/odt" / path.relative_to(ROOT / "configs/finetune/odt_td3")).exists()
