"""The fast path (`--compile true`) on CPU: the compiled update trains the same parameters as the update
as written, in every script, and a checkpoint written in either mode resumes in the other.

Inductor's C++ kernels take minutes to build on a cold cache (a new CI machine), so most scripts compile
here with the `aot_eager` backend: the same Dynamo capture and AOTAutograd graph (optimiser state, lrs in
tensors, graph breaks), run by eager kernels. Scripts in INDUCTOR go all the way through inductor.
"""

import functools
import math
from pathlib import Path

import pytest
import torch
import torch._inductor.config

from conftest import load_script

COMMON = "--wandb_mode disabled --device cpu"
VALUE = "--actor_hidden_dims [16,16] --critic_hidden_dims [16,16] --batch_size 32 --n_episodes 1"
FINETUNE = f"{VALUE} --offline_iterations 4 --online_iterations 4 --log_every 2 --offline_eval_freq 4 "
FINETUNE += "--online_eval_freq 4 --checkpoint_every 4"
OFFLINE = f"{VALUE} --max_timesteps 6 --log_every 3 --eval_freq 6 --checkpoint_every 6"
ONLINE_DT = "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 4 --eval_context 2 --batch_size 16 "
ONLINE_DT += "--warmup_steps 3 --eval_episodes 1 --buffer_size 50 --online_transitions 20 --log_every 2 "
ONLINE_DT += "--pretrain_steps 4 --updates_per_iteration 4 --online_iterations 1 --eval_every 4 --checkpoint_every 4"
TINY = {
    "offline/dt": "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 5 --batch_size 16 --warmup_steps 3 "
    "--eval_episodes 1 --target_returns [3600] --update_steps 6 --log_every 3 --eval_every 6 --checkpoint_every 6",
    "offline/iql": OFFLINE,
    "offline/cql": f"{OFFLINE} --cql_n_actions 3",
    "finetune/iql": FINETUNE,
    "finetune/cql": f"{FINETUNE} --cql_n_actions 3",
    "finetune/cal_ql": f"{FINETUNE} --cql_n_actions 3",
    "finetune/odt": ONLINE_DT,
    "finetune/odt_td3": f"{ONLINE_DT} --critic_hidden_dim 16",
    "online/sac": "--actor_hidden_dims [16,16] --critic_hidden_dims [16,16] --batch_size 32 --n_episodes 1 "
    "--total_steps 30 --random_steps 20 --eval_every 30 --checkpoint_every 30 --log_every 10",
}
INDUCTOR = {"offline/iql", "online/sac"}  # one offline and one online update, compiled to C++ as --compile does
# the budget that a resumed run extends to
EXTEND = {"offline/iql": "--max_timesteps 9", "finetune/odt_td3": "--online_iterations 2"}


@pytest.fixture(autouse=True)
def compile_backend(request, monkeypatch):
    """torch.compile with the aot_eager backend, unless the test's script is in INDUCTOR."""
    name = request.node.callspec.params.get("name") if hasattr(request.node, "callspec") else None
    if name not in INDUCTOR:
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))


def pseudo_noise(shape, like: torch.Tensor) -> torch.Tensor:
    """Numbers in (-1, 1) fixed by the shape alone: the same whatever order the noise is drawn in."""
    count = math.prod(shape)
    return torch.sin(torch.arange(count, dtype=like.dtype, device=like.device) * 12.9898 + count).reshape(shape)


@pytest.fixture(autouse=True)
def order_free_noise(monkeypatch):
    """A compiled graph may draw its random numbers in another order than the code as written: the update's
    noise (torch.randn_like, torch.rand) is replaced by pseudo-noise that does not depend on the order."""

    def rand(*shape, dtype=None, device=None, **_) -> torch.Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return (pseudo_noise(shape, torch.ones((), dtype=dtype, device=device)) + 1.0) / 2.0

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # dropout: eager's kernel, in either mode
    monkeypatch.setattr(torch, "randn_like", lambda tensor, **_: pseudo_noise(tensor.shape, tensor))
    monkeypatch.setattr(torch, "rand", rand)


def train(name: str, dataset: Path, run_dir: Path, *extra: str) -> dict:
    script = load_script(f"algorithms/{name}.py")
    args = [*TINY[name].split(), *COMMON.split(), "--dataset", str(dataset), "--run_dir", str(run_dir), *extra]
    if name == "online/sac":
        args[args.index("--dataset") : args.index("--dataset") + 2] = ["--env", "hopper"]
    return script.train(script.parse_config(script.TrainConfig, args))


def resume(name: str, run_dir: Path, *extra: str) -> dict:
    script = load_script(f"algorithms/{name}.py")
    return script.train(script.parse_config(script.TrainConfig, ["--resume", str(run_dir), *extra]))


def newest_checkpoint(run_dir: Path) -> dict:
    return torch.load(sorted((run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=False)


def tensors(state, prefix: str = "") -> dict:
    """Every float tensor and float in a checkpoint, by path (the fast path holds lrs in tensors)."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in tensors(value, f"{prefix}/{key}").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, value in enumerate(state) for k, v in tensors(value, f"{prefix}/{i}").items()}
    if isinstance(state, torch.Tensor) and state.is_floating_point():
        return {prefix: state.double()}
    if isinstance(state, float):
        return {prefix: torch.tensor(state, dtype=torch.float64)}
    return {}


@pytest.mark.parametrize("name", TINY)
def test_the_compiled_update_trains_the_same_parameters(name, hopper_random, tmp_path):
    train(name, hopper_random, tmp_path / "eager", "--compile", "false")
    train(name, hopper_random, tmp_path / "compiled", "--compile", "true")
    parts = ("/agent/", "/learner/", "/model/", "/optimizer/", "/scheduler/")  # what training changes, not timings
    eager, compiled = (
        {key: value for key, value in tensors(newest_checkpoint(tmp_path / run)).items() if key.startswith(parts)}
        for run in ("eager", "compiled")
    )
    assert eager.keys() == compiled.keys() and len(eager) > 4
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")


@pytest.mark.parametrize("name", EXTEND)
@pytest.mark.parametrize("first", ["true", "false"])
def test_a_checkpoint_resumes_in_the_other_mode(name, first, hopper_random, tmp_path):
    other = {"true": "false", "false": "true"}[first]
    train(name, hopper_random, tmp_path / "run", "--compile", first)
    before = newest_checkpoint(tmp_path / "run")["step"]
    summary = resume(name, tmp_path / "run", *EXTEND[name].split(), "--compile", other)
    assert newest_checkpoint(tmp_path / "run")["step"] > before
    assert any(key.startswith("eval/") for key in summary)


@pytest.mark.parametrize("name", ["offline/dt", "finetune/odt_td3"])
def test_bf16_autocast_trains_with_float32_outputs(name, hopper_random, tmp_path):
    summary = train(name, hopper_random, tmp_path / "run", "--bf16", "true")
    assert any(key.startswith("eval/") for key in summary)
    parts = newest_checkpoint(tmp_path / "run")
    weights = tensors(parts.get("model") or parts["learner"])
    assert all(torch.isfinite(value).all() for value in weights.values())
    script = load_script(f"algorithms/{name}.py")
    config = script.parse_config(script.TrainConfig, [*TINY[name].split(), "--bf16", "true"])
    trunk = script.DecisionTrunk(11, 3, config)
    hidden = trunk(torch.zeros(2, 4, 11), torch.zeros(2, 4, 3), torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.long))
    assert hidden.dtype == torch.float32
