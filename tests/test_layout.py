"""The layout the README promises: algorithm first, bounded script length and synced share, clean style.

The limits are ratchets at what the "algorithm first" restructuring reached (lines per script, synced
lines per script and overall), so the scripts cannot grow back. The issue's goals are lower still
(offline dt 500, iql 650, cql 700, fine-tuning 900 lines; synced copies at most 30% of the lines):
lower a limit here whenever a change reaches it.
"""

import difflib
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

LINE_LIMITS = {  # measured with SAC, adapters in generated files, Minari and the compiled fast path
    "offline/dt.py": 1011,
    "offline/iql.py": 952,
    "offline/cql.py": 1038,
    "finetune/odt.py": 1368,
    "finetune/odt_td3.py": 1403,
    "finetune/cql.py": 1151,
    "finetune/cal_ql.py": 1212,
    "finetune/iql.py": 1076,
    "online/sac.py": 1096,
}
PLUMBING_LIMIT = 540  # lines of the runtime and data blocks in one script (measured 540)
PLUMBING = ("runtime", "data")
BEGIN = re.compile(r"^# === shared block: (\w+) ")
END = re.compile(r"^# === end shared block: (\w+) ===$")


def synced_lines(text: str) -> dict:
    """Lines inside each shared block of a script, marker lines included."""
    counts, current = {}, None
    for line in text.splitlines():
        if BEGIN.match(line):
            current = BEGIN.match(line).group(1)
        if current:
            counts[current] = counts.get(current, 0) + 1
        if END.match(line):
            current = None
    return counts


def first_algorithm_line(text: str) -> int:
    """1-based line of the first definition or shared block after TrainConfig."""
    lines = text.splitlines()
    config = next(i for i, line in enumerate(lines) if line.startswith("class TrainConfig"))
    for number, line in enumerate(lines[config + 1 :], start=config + 2):
        if line.startswith(("def ", "class ", "@")) or BEGIN.match(line):
            return number
    raise AssertionError("no code after TrainConfig")


@pytest.mark.parametrize("script", LINE_LIMITS)
def test_script_length_order_and_plumbing_at_the_bottom(script):
    text = (ROOT / "algorithms" / script).read_text()
    lines = text.splitlines()
    assert len(lines) <= LINE_LIMITS[script], f"{script}: {len(lines)} lines"
    assert first_algorithm_line(text) <= 150
    assert lines[0].startswith('"""') and "python algorithms/" in text.split('"""')[1], "docstring with a command"
    order = [BEGIN.match(line).group(1) for line in lines if BEGIN.match(line)]
    assert order[-2:] == list(PLUMBING), "the plumbing is the last section"
    plumbing_start = next(i for i, line in enumerate(lines) if BEGIN.match(line) and "runtime" in line)
    assert "def train(" in "\n".join(lines[:plumbing_start]) and "def main(" in "\n".join(lines[:plumbing_start])
    assert lines[-2:] == ['if __name__ == "__main__":', "    run_main(main)"]
    assert not re.search(r"class TrainConfig\(\w", text), "TrainConfig is flat"


def test_synced_plumbing_is_a_small_share_of_the_scripts():
    total, plumbing, algorithm = 0, 0, 0
    for script in LINE_LIMITS:
        text = (ROOT / "algorithms" / script).read_text()
        counts = synced_lines(text)
        total += len(text.splitlines())
        plumbing += sum(counts.get(name, 0) for name in PLUMBING)
        algorithm += sum(value for name, value in counts.items() if name not in PLUMBING)
        assert sum(counts.get(name, 0) for name in PLUMBING) <= PLUMBING_LIMIT, script
    print(f"plumbing {plumbing / total:.1%}, shared algorithm blocks {algorithm / total:.1%} of {total} lines")
    assert (
        plumbing / total <= 0.474 and (plumbing + algorithm) / total <= 0.755
    )  # plumbing measured 47.3% (fast path included)


def test_odt_and_odt_td3_differ_only_in_the_method():
    odt, td3 = ((ROOT / "algorithms/finetune" / name).read_text().splitlines() for name in ("odt.py", "odt_td3.py"))
    changed = [line for line in difflib.unified_diff(odt, td3, lineterm="", n=0) if line[:1] in "+-"]
    changed = [line for line in changed if not line.startswith(("+++", "---"))]
    assert not any(BEGIN.match(line[1:]) or END.match(line[1:]) for line in changed), "same shared blocks"
    text = "\n".join(changed)
    for method in ("critic", "entropy", "temperature"):
        assert method in text.lower()
    assert "def train(" not in text, "the two train() loops are the same text"
    assert len(changed) <= 310, len(changed)  # measured 306, docstrings and TrainConfig included


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by requirements.txt")
def test_code_is_formatted_and_lint_clean():
    for command in (["ruff", "format", "--check", "."], ["ruff", "check", "."]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_no_sys_path_tricks_outside_the_tests():
    for path in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("tools/*.py"), *ROOT.glob("d4rl_compat/*.py")]:
        assert "sys.path" not in path.read_text(), path
