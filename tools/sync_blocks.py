"""Copies the canonical shared blocks (blocks/*.py) into every script that embeds them.

A script embeds a block between two marker lines:

    # === shared block: datasets (edit blocks/datasets.py, then run tools/sync_blocks.py) ===
    ...copied text...
    # === end shared block: datasets ===

The copied text is everything below the `# === block ===` line of blocks/<name>.py. The lines
above it are the block's imports: plain imports must also appear in the script's own import
section, and `from blocks.<other> import ...` means <other> must be embedded in the script too
(anywhere: Python resolves the names at call time, so the plumbing can sit at the bottom).

    python tools/sync_blocks.py          # rewrite the copies from their sources
    python tools/sync_blocks.py --check  # exit 1 and name each copy that differs (used by the tests)
"""

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
BLOCK_DIR = ROOT / "blocks"
SCRIPT_DIRS = ("algorithms",)
SEPARATOR = "# === block ===\n"
BEGIN = re.compile(r"^# === shared block: (\w+) \(edit blocks/\1\.py, then run tools/sync_blocks\.py\) ===\n$")
END = "# === end shared block: {} ===\n"
BEGIN_ANY = re.compile(r"^# === shared block: (\w+) ", re.MULTILINE)


def imported_names(source: str) -> Set[str]:
    """Each imported name as 'module.name as alias', so merged import lines compare equal."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {f"{alias.name} as {alias.asname or alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {f"{node.module}.{alias.name} as {alias.asname or alias.name}" for alias in node.names}
    return names


def read_block(name: str) -> Tuple[Set[str], str]:
    """Returns the block's imported names and the text that gets copied."""
    path = BLOCK_DIR / f"{name}.py"
    if not path.exists():
        raise SystemExit(f"unknown shared block '{name}': {path} does not exist")
    head, separator, body = path.read_text().partition(SEPARATOR)
    if not separator:
        raise SystemExit(f"{path} has no '{SEPARATOR.strip()}' line")
    return imported_names(head), body.strip("\n") + "\n\n\n"  # ruff format: two blank lines before the end marker


def sync_text(text: str, script: Path) -> Tuple[str, List[str]]:
    """Returns the script text with fresh block copies, and the problems found."""
    lines = text.splitlines(keepends=True)
    output: List[str] = []
    problems: List[str] = []
    embedded = set(BEGIN_ANY.findall(text))
    first_block = next((i for i, line in enumerate(lines) if BEGIN.match(line)), len(lines))
    script_imports = imported_names("".join(lines[:first_block]))
    index = 0
    while index < len(lines):
        match = BEGIN.match(lines[index])
        output.append(lines[index])
        index += 1
        if not match:
            continue
        name = match.group(1)
        try:
            end = lines.index(END.format(name), index)
        except ValueError:
            raise SystemExit(f"{script}: block '{name}' has no end marker '{END.format(name).strip()}'") from None
        imports, body = read_block(name)
        for imported in sorted(imports):
            dependency = re.match(r"blocks\.(\w+)\.", imported)
            if dependency and dependency.group(1) not in embedded:
                problems.append(f"{script}: block '{name}' needs block '{dependency.group(1)}' embedded too")
            elif not dependency and imported not in script_imports:
                problems.append(f"{script}: block '{name}' needs `{imported}` imported by the script")
        if "".join(lines[index:end]) != body:
            problems.append(f"{script}: copy of block '{name}' differs from blocks/{name}.py")
        output.append(body)
        output.append(lines[end])
        index = end + 1
    return "".join(output), problems


def scripts() -> List[Path]:
    return sorted(path for folder in SCRIPT_DIRS for path in (ROOT / folder).rglob("*.py"))


def main(check: bool) -> int:
    stale: Dict[Path, str] = {}
    failures = 0
    for script in scripts():
        text = script.read_text()
        synced, problems = sync_text(text, script)
        for problem in problems:
            is_import_problem = "needs" in problem
            if check or is_import_problem:
                print(problem)
                failures += 1
        if synced != text:
            stale[script] = synced
    if not check:
        for script, synced in stale.items():
            script.write_text(synced)
            print(f"synced {script.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
