"""The synced blocks embedded in scripts are byte-identical to their canonical source in blocks/."""

from pathlib import Path

from conftest import ROOT, load_script, run_cli

sync = load_script("tools/sync_blocks.py")
MARKER = "# === shared block: {0} (edit blocks/{0}.py, then run tools/sync_blocks.py) ===\n"


def script_with(imports: str, body: str) -> str:
    """A minimal script embedding the runtime and data blocks at its bottom, as the real scripts do."""
    return (
        f'"""Doc."""\n{imports}\n\ndef main():\n    pass\n\n\n'
        f"{MARKER.format('runtime')}{body}# === end shared block: runtime ===\n\n\n"
        f"{MARKER.format('data')}# === end shared block: data ===\n"
    )


IMPORTS = (
    "import dataclasses\nimport difflib\nimport functools\nimport importlib\nimport inspect\n"
    "import json\nimport math\nimport os\nimport pickle\nimport random\nimport re\nimport shutil\n"
    "import signal\nimport sys\nimport time\nimport urllib.request\nfrom dataclasses import dataclass, field, replace\n"
    "from pathlib import Path\nfrom typing import Any, Callable, Dict, List, Optional, Sequence, Tuple\n\n"
    "import gymnasium as gym\nimport h5py\nimport numpy as np\nimport pyrallis\nimport torch\nimport yaml\n"
)


def test_every_embedded_block_matches_its_source():
    result = run_cli("tools/sync_blocks.py", "--check")
    assert result.returncode == 0, result.stdout
    assert len(sync.scripts()) == 9


def test_a_stale_copy_is_detected_and_rewritten():
    script = Path("algorithms/example.py")
    synced, problems = sync.sync_text(script_with(IMPORTS, ""), script)
    assert problems == [
        f"{script}: copy of block 'runtime' differs from blocks/runtime.py",
        f"{script}: copy of block 'data' differs from blocks/data.py",
    ]
    assert sync.sync_text(synced, script) == (synced, [])
    drifted = synced.replace("def episode_bounds(", "def episode_bounds_renamed(", 1)
    assert sync.sync_text(drifted, script) == (synced, [f"{script}: copy of block 'data' differs from blocks/data.py"])


def test_a_missing_import_is_reported():
    script = Path("algorithms/example.py")
    _, problems = sync.sync_text(script_with(IMPORTS.replace("import h5py\n", ""), ""), script)
    assert f"{script}: block 'data' needs `h5py as h5py` imported by the script" in problems


def test_a_block_without_the_block_it_uses_is_reported():
    script = Path("algorithms/example.py")
    text = script_with(IMPORTS, "").replace(MARKER.format("runtime"), "# runtime removed\n")
    text = text.replace("# === end shared block: runtime ===\n", "")
    _, problems = sync.sync_text(text, script)
    assert f"{script}: block 'data' needs block 'runtime' embedded too" in problems


def test_scripts_import_no_file_of_this_repo():
    for script in sync.scripts():
        for line in script.read_text().splitlines():
            assert not line.startswith(("from blocks", "import blocks", "from tools", "from algorithms")), (
                script,
                line,
            )
            assert not line.startswith(("import d4rl_compat", "from d4rl_compat")), (script, line)  # lazily only
    assert ROOT.joinpath("blocks", "data.py").exists()
