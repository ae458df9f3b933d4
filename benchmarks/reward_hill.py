"""The "reward hill" toy of the ODT+TD3 paper (Yan, Schwing, Wang, NeurIPS 2024, Sec. 3.1, Fig. 2).

    python benchmarks/reward_hill.py --output_dir benchmarks/results   # the recorded results: seeds 0-4 and 59
    python benchmarks/reward_hill.py --seeds 0 1 2                      # writes to runs/reward_hill/

One state, one step: the action a in [-1, 1] earns r(a) = (a + 1)^2 for a < 0 and 1 - 2a for
a >= 0, a hill with its peak r = 1 at a = 0. The offline data holds only the hill's two feet
(100 actions in (-1, -0.95), 28 in (0.5, 1)), all with return <= 0.0025. Return-to-go
conditioning alone gives no direction towards the peak; a critic's gradient does.

Three methods, each with 2 x 128 ReLU MLPs, Adam lr 1e-3, deterministic tanh actors:
  ODT       net(rtg) -> a, trained by MSE on (return, action) pairs;
  DDPG      critic Q(a) fits r, actor (of the single state) maximises Q;
  ODT+DDPG  critic Q(rtg, a) fits r, actor loss 0.02 * MSE - Q(rtg, net(rtg)), as in the official
            motivation.py; --critic_action_only gives it Q(a), like the method's "reflexive" critic
            on (s, a) in a task with a single state.
Pretraining: 5 epochs of batch 32 (20 gradient steps). Fine-tuning (fresh optimisers): 16
epochs, each first adds 64 rollouts, then one pass over the whole buffer in batches of 32. A
rollout asks the policy for return 1 and adds exploration noise to the action, 0.02 * (U(0, 1) -
0.5) as in the official script; the env clamps the action to [-1, 1], the buffer stores it
unclamped with the reward it earned as its return-to-go (hindsight). The reward of the policy
queried at rtg = 1 is recorded after every gradient step. Seeds 0..n-1, plus the official
script's single seed 59 reported apart. The official script also runs in float64 with the three
methods sharing one RNG stream: not reproduced here.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn

METHODS = ("ODT", "DDPG", "ODT+DDPG")
PRETRAIN_EPOCHS, ONLINE_EPOCHS, BATCH, ROLLOUTS, LEARNING_RATE, SUPERVISED_WEIGHT = 5, 16, 32, 64, 1e-3, 0.02
EXPLORATION_NOISE, OFFICIAL_SEED = 0.02, 59


def hill_reward(action: torch.Tensor) -> torch.Tensor:
    return torch.where(action < 0, (action + 1) ** 2, 1 - 2 * action)


def mlp(inputs: int, outputs: int, tanh: bool = False) -> nn.Sequential:
    layers = [nn.Linear(inputs, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, outputs)]
    return nn.Sequential(*layers, *([nn.Tanh()] if tanh else []))


def offline_data(generator: torch.Generator) -> torch.Tensor:
    left = -1 + 0.05 * torch.rand(100, generator=generator)
    right = 0.5 + 0.5 * torch.rand(28, generator=generator)
    return torch.cat([left, right])


class Method:
    """One of the three learners; `policy(rtg)` is the action it takes when asked for return rtg."""

    def __init__(self, name: str, critic_action_only: bool = False):
        self.name = name
        self.critic_sees_rtg = name == "ODT+DDPG" and not critic_action_only
        self.actor = mlp(1, 1, tanh=True)
        self.critic = None if name == "ODT" else mlp(2 if self.critic_sees_rtg else 1, 1)
        self.new_optimisers()

    def new_optimisers(self) -> None:
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=LEARNING_RATE)
        self.critic_optimizer = (
            None if self.critic is None else torch.optim.Adam(self.critic.parameters(), lr=LEARNING_RATE)
        )

    def policy(self, rtg: torch.Tensor) -> torch.Tensor:
        inputs = torch.ones_like(rtg) if self.name == "DDPG" else rtg  # DDPG's actor sees only the single state
        return self.actor(inputs[:, None]).squeeze(-1)

    def q(self, rtg: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        inputs = torch.stack([rtg, action], dim=-1) if self.critic_sees_rtg else action[:, None]
        return self.critic(inputs).squeeze(-1)

    def update(self, rtg: torch.Tensor, action: torch.Tensor) -> None:
        """One gradient step on a batch of (return-to-go = reward, action) pairs."""
        if self.critic is not None:
            critic_loss = ((self.q(rtg, action) - rtg) ** 2).mean()  # one step: the target is the reward
            self.critic_optimizer.zero_grad()
            critic_loss.backward()
            self.critic_optimizer.step()
        predicted = self.policy(rtg)
        if self.name == "ODT":
            loss = ((predicted - action) ** 2).mean()
        elif self.name == "DDPG":
            loss = -self.q(rtg, predicted).mean()
        else:
            loss = SUPERVISED_WEIGHT * ((predicted - action) ** 2).mean() - self.q(rtg, predicted).mean()
        self.actor_optimizer.zero_grad()
        loss.backward()
        self.actor_optimizer.step()


def run(name: str, seed: int, critic_action_only: bool = False) -> Dict[str, object]:
    """Trains one method on one seed; returns the reward-per-gradient-step curve and the final policy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    method = Method(name, critic_action_only)
    actions = offline_data(generator)
    returns = hill_reward(actions)
    query = torch.ones(1)
    curve: List[float] = []

    def epoch() -> None:
        order = torch.randperm(len(actions), generator=generator)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            method.update(returns[batch], actions[batch])
            with torch.no_grad():
                curve.append(float(hill_reward(method.policy(query))[0]))

    for _ in range(PRETRAIN_EPOCHS):
        epoch()
    pretrained_steps = len(curve)
    method.new_optimisers()
    for _ in range(ONLINE_EPOCHS):
        with torch.no_grad():
            noise = EXPLORATION_NOISE * (torch.rand(ROLLOUTS, generator=generator) - 0.5)
            new_actions = method.policy(torch.ones(ROLLOUTS)) + noise
        actions = torch.cat([actions, new_actions])
        returns = torch.cat([returns, hill_reward(new_actions.clamp(-1, 1))])  # hindsight: the return received
        epoch()
    with torch.no_grad():
        rtg_grid = torch.linspace(-1, 1, 101)
        action_curve = method.policy(rtg_grid)
        final_action = float(method.policy(query)[0])
    return {
        "method": name,
        "seed": seed,
        "curve": curve,
        "pretrained_steps": pretrained_steps,
        "final_reward": curve[-1],
        "final_action": final_action,
        "rtg_grid": rtg_grid.tolist(),
        "action_curve": action_curve.tolist(),
    }


def run_all(seeds: List[int], critic_action_only: bool = False) -> Dict[str, List[Dict[str, object]]]:
    torch.set_num_threads(1)
    return {name: [run(name, seed, critic_action_only) for seed in seeds] for name in METHODS}


def plot(results: Dict[str, List[Dict[str, object]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    grid = torch.linspace(-1, 1, 201)
    left.plot(grid, hill_reward(grid), color="black")
    generator = torch.Generator().manual_seed(0)
    data = offline_data(generator)
    left.scatter(data, hill_reward(data), s=8, color="tab:gray", label="offline data")
    left.set(title="reward hill", xlabel="action", ylabel="reward")
    left.legend()
    for name, color in zip(METHODS, ("tab:blue", "tab:orange", "tab:green")):
        runs = results[name]
        length = min(len(run["curve"]) for run in runs)
        curves = np.array([run["curve"][:length] for run in runs])
        mean, std = curves.mean(0), curves.std(0)
        steps = np.arange(1, length + 1)
        middle.plot(steps, mean, color=color, label=name)
        middle.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        if name != "DDPG":  # DDPG's actor does not take a return-to-go
            actions = np.array([run["action_curve"] for run in runs])
            right.plot(runs[0]["rtg_grid"], actions.mean(0), color=color, label=name)
    middle.axvline(results[METHODS[0]][0]["pretrained_steps"], color="gray", linestyle=":", label="online starts")
    middle.set(
        title=f"reward of the policy at rtg 1 ({len(results[METHODS[0]])} seeds, mean ± std)",
        xlabel="gradient step",
        ylabel="reward",
        ylim=(-1.05, 1.05),
    )
    middle.legend()
    right.axhline(0, color="black", linewidth=0.5)
    right.set(title="learned action vs return-to-go (after fine-tuning)", xlabel="return-to-go", ylabel="action")
    right.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary_table(results: Dict[str, List[Dict[str, object]]]) -> str:
    lines = ["| method | final reward (mean ± std) | per seed | final action at rtg 1 (mean) |", "|---|---|---|---|"]
    for name in METHODS:
        rewards = np.array([run["final_reward"] for run in results[name]])
        actions = np.array([run["final_action"] for run in results[name]])
        lines.append(
            f"| {name} | {rewards.mean():.3f} ± {rewards.std():.3f} | "
            f"{', '.join(f'{value:.3f}' for value in rewards)} | {actions.mean():+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--output_dir", type=Path, default=Path("runs/reward_hill"))
    parser.add_argument("--critic_action_only", action="store_true", help="ODT+DDPG critic Q(a) instead of Q(rtg, a)")
    args = parser.parse_args()
    started = time.perf_counter()
    results = run_all(args.seeds, args.critic_action_only)
    official = run_all([OFFICIAL_SEED], args.critic_action_only)
    stem = "reward_hill_critic_action_only" if args.critic_action_only else "reward_hill"
    elapsed = time.perf_counter() - started
    plot(results, args.output_dir / f"{stem}.png")
    table, official_table = summary_table(results), summary_table(official)
    text = "\n".join(
        [
            "# Reward hill (ODT+TD3 paper, Fig. 2), reproduced",
            "",
            f"Command: `{' '.join(['python benchmarks/reward_hill.py', *sys.argv[1:]])}`",
            f"ODT+DDPG critic: {'Q(a)' if args.critic_action_only else 'Q(rtg, a), as in the official motivation.py'}. "
            f"Training time {elapsed:.1f} s on CPU (1 thread). Reward of the policy asked for return 1 after the "
            "last gradient step; the peak is 1 at action 0, the feet give at most 0.0025.",
            "",
            f"Seeds {args.seeds}:",
            "",
            table,
            "",
            f"The official script's seed {OFFICIAL_SEED} alone:",
            "",
            official_table,
            "",
            f"![reward hill]({stem}.png)",
            "",
        ]
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{stem}.md").write_text(text)
    numbers = {
        name: [{key: run[key] for key in ("seed", "final_reward", "final_action")} for run in runs + official[name]]
        for name, runs in results.items()
    }
    (args.output_dir / f"{stem}.json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(table, official_table, sep="\n\n")
    print(f"wrote {args.output_dir / stem}.png, .md and .json in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
