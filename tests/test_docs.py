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
