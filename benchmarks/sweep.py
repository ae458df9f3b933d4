"""Runs a sweep, a grid of training runs of the single-file scripts, on a Ray cluster; re-running resumes it.

    python benchmarks/sweep.py benchmarks/suites/smoke.yaml               # an embedded local Ray cluster
    python benchmarks/sweep.py benchmarks/suites/cpu.yaml --dry_run       # print the expanded runs, run nothing
    python benchmarks/sweep.py my_sweep.yaml --address auto               # join a running cluster (ray start)
    python benchmarks/report.py runs/sweeps/smoke                         # then the report

A sweep file (YAML) lists entries; each expands to one run per dataset x seed:

    output: runs/sweeps/example              # default of --output
    prepare:                                 # run first, each when a file it creates is missing
      - creates: "{output}/hopper-random.hdf5"
        run: python -m d4rl_compat.generate --env hopper --num_transitions 3000 --output {output}/hopper-random.hdf5
    resources: {num_cpus: 1, num_gpus: 0.25} # per run; Ray schedules by them, so four such runs share a GPU
    overrides: {wandb_mode: disabled}        # config keys of every run
    entries:
      - name: iql                            # its runs: <output>/iql/<dataset tag>/seed<k>/
        script: algorithms/offline/iql.py
        config: configs/offline/iql/hopper/medium_v2.yaml
        datasets:                            # a D4RL name or path, or a mapping: dataset, tag, config, overrides
          - hopper-medium-v2
          - {dataset: "{output}/hopper-random.hdf5", overrides: {normalize_reward: true}}
        seeds: [0, 1, 2]
        overrides: {max_timesteps: 100000}   # over the sweep's; a dataset's overrides go over these
        published_algorithm: IQL             # its name in benchmarks/published_scores.json (default: the script's)

Top-level keys starting with x- are ignored: a place for YAML anchors (&name) that entries share (*name, or merged
with <<: *name). A dataset mapping may also name `published_dataset` (default: its tag without the -v2 suffix).

Each run is `python <script> --config_path <config> --dataset <dataset> --train_seed <k> --<key> <value> ...
--run_dir <dir>`, started in the repository root (relative paths in the sweep file are relative to it; `{output}`
stands for the output folder), with its stdout and stderr appended to <dir>/run.log. A run with summary.json is
skipped, one with a checkpoint continues with --resume, any other starts afresh: running the same command again
after a crash, a failure or Ctrl-C finishes the grid and runs nothing twice. On a cluster every node needs the
repository, the datasets and the output folder at the same paths (one image, shared storage); prepare commands run
where this command runs.
"""

import argparse
import ctypes
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import ray
import yaml

from common import ROOT

LOG_NAME = "run.log"  # the scripts accept this file in a fresh run directory
SWEEP_KEYS = {"output", "prepare", "resources", "overrides", "entries"}
ENTRY_KEYS = {"name", "script", "config", "datasets", "seeds", "overrides", "resources", "published_algorithm"}
DATASET_KEYS = {"dataset", "tag", "config", "overrides", "published_dataset"}
SET_BY_SWEEP = {"config_path", "dataset", "train_seed", "run_dir", "resume"}
TAIL_LINES = 20


class SweepError(Exception):
    """A bad sweep file or a failed prepare command: one message, exit code 2."""


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: the script, its arguments and its run directory."""

    entry: str
    tag: str
    seed: int
    script: str
    arguments: Tuple[str, ...]  # after the script path; --resume is added when a checkpoint exists
    run_dir: Path
    num_cpus: float
    num_gpus: float
    dataset: Optional[str] = None
    published_algorithm: Optional[str] = None
    published_dataset: Optional[str] = None

    @property
    def name(self) -> str:
        return f"{self.entry}/{self.tag}/seed{self.seed}"

    def state(self) -> str:
        """done (summary.json), resume (a checkpoint) or fresh."""
        if (self.run_dir / "summary.json").exists():
            return "done"
        return "resume" if any((self.run_dir / "checkpoints").glob("step_*.pt")) else "fresh"

    def command(self) -> List[str]:
        resume = ["--resume", str(self.run_dir)] if self.state() == "resume" else []
        return [self.script, *self.arguments, *resume]


def load_sweep(path: Path) -> Dict[str, Any]:
    try:
        sweep = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SweepError(f"cannot read the sweep file: {error}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("entries"), list):
        raise SweepError(f"{path}: expected a mapping with a list of `entries`")
    check_keys({key: value for key, value in sweep.items() if not key.startswith("x-")}, SWEEP_KEYS, str(path))
    return sweep


def check_keys(mapping: Any, valid: set, where: str) -> None:
    if not isinstance(mapping, dict):
        raise SweepError(f"{where}: expected a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - valid)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")


def fill(value: Any, output: Path) -> Any:
    return value.replace("{output}", str(output)) if isinstance(value, str) else value


def cli_value(value: Any) -> str:
    """A YAML value as the scripts' command line reads it: true/false, [a,b] for tuples, null for None."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(cli_value(item) for item in value) + "]"
    return "null" if value is None else str(value)


def dataset_tag(dataset: str) -> str:
    """The run directory's name for a dataset, as the scripts name their default run directories."""
    return Path(dataset).stem if dataset.endswith((".hdf5", ".h5")) else dataset.replace(":", "_").replace("/", "_")


def resources_of(*layers: Dict[str, Any], where: str) -> Tuple[float, float]:
    merged = {"num_cpus": 1, "num_gpus": 0}
    for layer in layers:
        check_keys(layer, {"num_cpus", "num_gpus"}, f"{where}: resources")
        merged.update(layer)
    num_cpus, num_gpus = merged["num_cpus"], merged["num_gpus"]
    if not all(isinstance(value, (int, float)) and value >= 0 for value in (num_cpus, num_gpus)):
        raise SweepError(f"{where}: num_cpus and num_gpus must be numbers >= 0, not {num_cpus}, {num_gpus}")
    if num_gpus > 1 and num_gpus != int(num_gpus):  # Ray's rule: a fraction of one GPU, or whole GPUs
        raise SweepError(f"{where}: num_gpus above 1 must be a whole number, not {num_gpus}")
    return num_cpus, num_gpus


def expand(sweep: Dict[str, Any], output: Path) -> List[RunSpec]:
    """The sweep's runs: every entry x dataset x seed, in file order."""
    runs: List[RunSpec] = []
    for index, entry in enumerate(sweep["entries"]):
        check_keys(entry, ENTRY_KEYS, f"entry {index + 1}")
        missing = [key for key in ("name", "script", "datasets", "seeds") if not entry.get(key)]
        if missing:
            raise SweepError(f"entry {index + 1} ({entry.get('name', 'unnamed')}): missing {', '.join(missing)}")
        name, script = str(entry["name"]), str(entry["script"])
        if not re.fullmatch(r"[\w.+-]+", name):
            raise SweepError(f"entry name '{name}': use letters, digits and _ . + - (it names a folder)")
        if not (ROOT / script).is_file():
            raise SweepError(f"entry {name}: script {script} not found under {ROOT}")
        seeds = entry["seeds"]
        if not isinstance(seeds, list) or not all(isinstance(seed, int) and seed >= 0 for seed in seeds):
            raise SweepError(f"entry {name}: seeds must be a list of integers >= 0, not {seeds!r}")
        num_cpus, num_gpus = resources_of(sweep.get("resources", {}), entry.get("resources", {}), where=name)
        for item in entry["datasets"]:
            item = {"dataset": item} if isinstance(item, str) else item
            check_keys(item, DATASET_KEYS, f"entry {name}: dataset {item}")
            dataset = fill(item.get("dataset"), output)
            tag = item.get("tag") or (dataset_tag(dataset) if dataset else None)
            if not tag:
                raise SweepError(f"entry {name}: a dataset item without a dataset needs a tag")
            config = item.get("config", entry.get("config"))
            if config and not (ROOT / config).is_file():
                raise SweepError(f"entry {name}: config {config} not found under {ROOT}")
            overrides = {**sweep.get("overrides", {}), **entry.get("overrides", {}), **item.get("overrides", {})}
            clash = sorted(SET_BY_SWEEP & set(overrides))
            if clash:
                raise SweepError(f"entry {name}: {', '.join(clash)} are set by the sweep, not by overrides")
            for seed in seeds:
                run_dir = output / name / tag / f"seed{seed}"
                arguments = ["--config_path", config] if config else []
                arguments += ["--dataset", dataset] if dataset else []
                arguments += ["--train_seed", str(seed)]
                for key, value in overrides.items():
                    arguments += [f"--{key}", cli_value(fill(value, output))]
                arguments += ["--run_dir", str(run_dir)]
                published = dict(published_algorithm=entry.get("published_algorithm"))
                published.update(published_dataset=item.get("published_dataset"))
                runs.append(
                    RunSpec(
                        name, tag, seed, script, tuple(arguments), run_dir, num_cpus, num_gpus, dataset, **published
                    )
                )
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SweepError(f"two runs share a run directory: {', '.join(duplicates)} (give the datasets distinct tags)")
    return runs


def prepare_commands(sweep: Dict[str, Any], output: Path) -> List[Tuple[List[Path], str]]:
    """(files it creates, command) of each prepare step."""
    steps = []
    for step in sweep.get("prepare", []):
        check_keys(step, {"creates", "run"}, f"prepare step {step}")
        creates = step.get("creates") or []
        creates = [creates] if isinstance(creates, str) else creates
        steps.append(([ROOT / fill(path, output) for path in creates], fill(step["run"], output)))
    return steps


def prepare(sweep: Dict[str, Any], output: Path) -> None:
    for creates, command in prepare_commands(sweep, output):
        if creates and all(path.exists() for path in creates):
            continue
        print(f"prepare: {command}", flush=True)
        words = shlex.split(command)
        words[0] = sys.executable if words[0] == "python" else words[0]  # this environment's Python
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        if subprocess.run(words, cwd=ROOT, env=env).returncode:
            raise SweepError(f"prepare command failed: {command}")
        absent = [str(path) for path in creates if not path.exists()]
        if absent:
            raise SweepError(f"prepare command did not create {', '.join(absent)}: {command}")


def describe(run: RunSpec) -> str:
    resources = f"{run.num_cpus:g} CPU, {run.num_gpus:g} GPU"
    return f"[{run.state():>6}] {run.name} ({resources}): python {shlex.join(run.command())}"


def write_manifest(sweep_file: Path, runs: List[RunSpec], output: Path) -> None:
    """<output>/sweep.json: what benchmarks/report.py needs to know about each run besides its directory."""
    rows = [
        dict(
            name=run.name,
            entry=run.entry,
            tag=run.tag,
            seed=run.seed,
            script=run.script,
            dataset=run.dataset,
            run_dir=str(run.run_dir.relative_to(output)),
            published_algorithm=run.published_algorithm,
            published_dataset=run.published_dataset,
        )
        for run in runs
    ]
    output.mkdir(parents=True, exist_ok=True)
    (output / "sweep.json").write_text(json.dumps({"sweep_file": str(sweep_file), "runs": rows}, indent=2) + "\n")


# ---------------------------------------------------------------- running on Ray


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM when the Ray worker that started it dies, so a crashed sweep leaves
    no run writing into a directory the next attempt resumes (the scripts checkpoint and exit on SIGTERM)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def execute(run: RunSpec, root: str, started_runs: Any) -> Dict[str, Any]:
    """A Ray task: one run to its end in a subprocess, its output appended to <run dir>/run.log."""
    if threading.current_thread() is threading.main_thread():  # Ray runs tasks there
        # ray.cancel stops a running task with SIGINT, which a worker started from a background shell ignores
        signal.signal(signal.SIGINT, signal.default_int_handler)
    started_runs.add.remote(run.name)
    start, state, command = time.time(), run.state(), [sys.executable, *run.command()]
    threads = str(max(1, int(run.num_cpus)))  # torch's thread pool: the CPUs this run holds
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    env.update(PYTHONUNBUFFERED="1", TQDM_MININTERVAL="10")  # a live log without a progress bar every 0.1 s
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with open(run.run_dir / LOG_NAME, "a") as log:
        log.write(f"\n=== sweep: {time.strftime('%Y-%m-%d %H:%M:%S')} {state} on {socket.gethostname()}\n")
        log.write(f"=== {shlex.join(command)}\n")
        log.flush()
        preexec = die_with_parent if sys.platform == "linux" else None
        process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
        log.write(f"=== pid {process.pid}\n")
        log.flush()
        try:
            while True:  # short waits, so that a cancellation (KeyboardInterrupt) reaches this frame
                try:
                    returncode = process.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    pass
        except BaseException:  # the sweep was stopped: the script writes a checkpoint on SIGTERM
            process.terminate()
            log.write(f"=== stopped by the sweep, exit code {process.wait()}\n")
            raise
        log.write(f"=== exit code {returncode} after {time.time() - start:.0f} s\n")
    return {"returncode": returncode, "seconds": time.time() - start}


class StartedRuns:
    """A Ray actor the tasks tell when they start, so the progress line can tell running from waiting runs."""

    def __init__(self) -> None:
        self.names: set = set()

    def add(self, name: str) -> None:
        self.names.add(name)

    def get(self) -> set:
        return self.names


def connect(address: Optional[str], num_cpus: Optional[float], num_gpus: Optional[float]) -> None:
    """Joins the cluster at `address`, or starts an embedded one on this machine."""
    quiet = dict(log_to_driver=False)  # the runs write to their run.log; this terminal shows the progress
    if address:
        ray.init(address=address, **quiet)
    else:  # runs return a few numbers: a small object store
        cluster = dict(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=256 * 2**20, include_dashboard=False)
        ray.init(**cluster, **quiet)


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - 64 * 1024))
        text = file.read().decode(errors="replace")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def failure(run: RunSpec, returncode: int) -> Optional[str]:
    if returncode < 0:
        return f"killed by signal {-returncode}"
    if returncode:
        return f"exit code {returncode}"
    return None if (run.run_dir / "summary.json").exists() else "exit code 0 but no summary.json"


def duration(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))


def run_all(runs: List[RunSpec], poll_seconds: float = 2.0) -> List[Tuple[RunSpec, str]]:
    """Runs every run not done yet on the connected cluster; prints progress; returns the failed runs and why."""
    todo = [run for run in runs if run.state() != "done"]
    resuming = sum(run.state() == "resume" for run in todo)
    print(
        f"{len(runs)} runs: {len(runs) - len(todo)} done already (skipped), {resuming} to resume, "
        f"{len(todo) - resuming} to start",
        flush=True,
    )
    if not todo:
        return []
    if __name__ != "__main__":  # imported (the tests): send this module's code, workers cannot import it by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started_runs = ray.remote(num_cpus=0)(StartedRuns).remote()
    task = ray.remote(max_retries=2)(execute)  # a lost worker or node: the retry resumes from the checkpoint
    pending = {
        task.options(num_cpus=run.num_cpus, num_gpus=run.num_gpus, name=run.name).remote(
            run, str(ROOT), started_runs
        ): run
        for run in todo
    }
    failed: List[Tuple[RunSpec, str]] = []
    seconds: List[float] = []
    begin, last_counts, last_print = time.time(), None, 0.0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll_seconds)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    result = ray.get(ref)
                    seconds.append(result["seconds"])
                    error = failure(run, result["returncode"])
                except ray.exceptions.RayError as exception:
                    error = f"{type(exception).__name__}: {str(exception).strip().splitlines()[-1]}"
                if error:
                    failed.append((run, error))
                print(f"  {'FAILED' if error else 'finished'} {run.name}" + (f": {error}" if error else ""), flush=True)
            started = ray.get(started_runs.get.remote())
            running = sum(run.name in started for run in pending.values())
            finished = len(todo) - len(pending) - len(failed)
            counts = (finished, running, len(failed))
            if counts != last_counts or time.time() - last_print > 30:
                eta = ""
                if pending:  # mean run time so far x runs left / runs at a time
                    left = sum(seconds) / len(seconds) * len(pending) / running if seconds and running else None
                    eta = f"; ETA {duration(left) if left is not None else 'when a run has ended'}"
                print(
                    f"[{duration(time.time() - begin)}] {finished}/{len(todo)} done, {running} running, "
                    f"{len(failed)} failed, {len(pending) - running} waiting{eta}",
                    flush=True,
                )
                last_counts, last_print = counts, time.time()
    except KeyboardInterrupt:
        print("\nstopping: the running scripts write a checkpoint; the same command resumes them", flush=True)
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=120)
        raise
    return failed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_file", type=Path)
    parser.add_argument("--output", type=Path, help="the sweep's folder (default: the sweep file's `output`)")
    parser.add_argument("--address", help="a running Ray cluster to join (auto, or host:port); default: start one here")
    parser.add_argument("--num_cpus", type=float, help="CPUs of the embedded cluster (default: all)")
    parser.add_argument("--num_gpus", type=float, help="GPUs of the embedded cluster (default: all)")
    parser.add_argument("--dry_run", action="store_true", help="print the prepare steps and the runs, run nothing")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep_file)
        if not (args.output or sweep.get("output")):
            raise SweepError("no output folder: pass --output or set `output` in the sweep file")
        output = (args.output or ROOT / sweep["output"]).resolve()
        runs = expand(sweep, output)
        if args.dry_run:
            print(f"{args.sweep_file}: {len(runs)} runs in {output}")
            for creates, command in prepare_commands(sweep, output):
                present = creates and all(path.exists() for path in creates)
                print(f"prepare{' (files present, skipped)' if present else ''}: {command}")
            print("\n".join(describe(run) for run in runs))
            return 0
        output.mkdir(parents=True, exist_ok=True)
        lock = open(output / ".sweep.lock", "w")  # released when this function returns and the file closes
        try:  # two sweeps in one folder would run the same runs twice
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another sweep is running in {output}") from None
        prepare(sweep, output)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_manifest(args.sweep_file, runs, output)
    connected_here = not ray.is_initialized()  # a caller may have connected already (the tests)
    if connected_here:
        connect(args.address, args.num_cpus, args.num_gpus)
    # SIGTERM (a pre-emption) stops the runs as Ctrl-C does; set after ray.init, which installs a handler of its own
    previous_handler = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        failed = run_all(runs)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if connected_here:
            ray.shutdown()
    if failed:
        print(f"\n{len(failed)} of {len(runs)} runs failed:")
        for run, error in failed:
            print(f"--- {run.name}: {error}; the end of {run.run_dir / LOG_NAME}:")
            print("    " + log_tail(run.run_dir / LOG_NAME).replace("\n", "\n    "))
        print("\nFix the cause and run the same command again: finished runs are skipped, the others resume.")
        return 1
    print(f"all {len(runs)} runs finished; report: python benchmarks/report.py {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
