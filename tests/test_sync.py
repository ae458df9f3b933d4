"""The shared blocks embedded in scripts are byte-identical to their canonical source."""
from conftest import ROOT, load_script, run_cli

sync = load_script("tools/sync_blocks.py")


def test_every_embedded_block_matches_its_source():
    result = run_cli("tools/sync_blocks.py", "--check")
    assert result.returncode == 0, result.stdout
    assert sync.scripts(), "no scripts found"


def test_a_drifted_copy_is_detected_and_rewritten():
    script = ROOT / "algorithms/offline/dt.py"
    text = script.read_text()
    drifted = text.replace("def episode_bounds(", "def episode_bounds_renamed(", 1)
    assert drifted != text
    synced, problems = sync.sync_text(drifted, script)
    assert problems == [f"{script}: copy of block 'datasets' differs from blocks/datasets.py"]
    assert synced == text


def test_a_missing_import_is_reported():
    script = ROOT / "algorithms/offline/dt.py"
    text = script.read_text().replace("import h5py\n", "", 1)
    _, problems = sync.sync_text(text, script)
    assert problems == [f"{script}: block 'datasets' needs `h5py as h5py` imported by the script"]


def test_scripts_import_no_file_of_this_repo():
    for script in sync.scripts():
        for line in script.read_text().splitlines():
            assert not line.startswith(("from blocks", "import blocks", "from tools", "from algorithms")), (script, line)
