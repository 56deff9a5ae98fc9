"""The documentation stays in step with the code."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    generated = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_cli_reference.py")],
                               capture_output=True, text=True, check=True).stdout
    assert generated == (ROOT / "docs" / "cli.md").read_text(), \
        "docs/cli.md is stale: run python docs/generate_cli_reference.py --write"


def test_readme_opens_with_the_two_commands_and_links_exist():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert "examples/run_example.sh" in block[0] and "pytest" in block[1]
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (ROOT / link).exists(), link


def test_nothing_refers_to_a_folder_beside_the_repository():
    """Tests, docs, examples and benchmarks use tests/data, never the shared folder beside the checkout."""
    pattern = "../" + "shared"  # split so that this file does not match itself
    skip = {".git", ".pytest_cache", ".benchmarks", "__pycache__", "careless_online.egg-info", "example_out"}
    offenders = []
    for path in ROOT.rglob("*"):
        if skip.intersection(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        if path.suffix in (".py", ".md", ".sh", ".cfg", ".toml", ".txt", ".json", ".yml", ".yaml", "") \
                and path.stat().st_size < 2_000_000:
            if pattern in path.read_text(errors="ignore"):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_example_script_shows_progress():
    script = (ROOT / "examples" / "run_example.sh").read_text()
    assert "careless_online mono" in script and "--disable-progress-bar" not in script
