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


def test_cli_reference_shows_help_as_the_command_prints_it():
    text = (ROOT / "docs" / "cli.md").read_text()
    assert "%%" not in text and "falls linearly to 2% of --learning-rate" in text


# ---------------------------------------------------------- docs/careless_users.md against the parser

#: A flag at the start of a backticked span: `--dmin`, `-d/--dmin`, `--groups KEY`.
_DOC_FLAG = re.compile(r"`((?:-[A-Za-z]/)?--[a-z0-9-]+)")


def _careless_users_section(title):
    text = (ROOT / "docs" / "careless_users.md").read_text()
    assert f"\n## {title}\n" in text, f"docs/careless_users.md has no section '{title}'"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _doc_flags(text):
    """Every flag named in ``text`` outside parentheses, each as its names (``-d/--dmin`` -> ``-d``, ``--dmin``)."""
    bare = re.sub(r"\([^()]*\)", "", text)
    return [match.split("/") for match in _DOC_FLAG.findall(bare)]


def _mono_actions():
    from careless_online.cli.mono import build_parser

    return {option: action for action in build_parser()._actions for option in action.option_strings}


def _table_rows(text):
    """The body rows of the Markdown table(s) in ``text``, as lists of cells."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in text.splitlines() if line.startswith("| `")]
    assert rows, "no table rows found"
    return rows


def _check_default(flag, action, stated):
    """Compare a default the page states (a number, off, —, or a word) with the parser's."""
    number = re.match(r"^\**(-?[0-9][0-9.e-]*)\**(?:[:;,]|$)", stated)
    if stated == "off":
        assert action.nargs == 0 and action.default is False, flag
    elif stated == "—":
        assert action.default is None, flag
    elif number:
        assert float(number.group(1)) == float(action.default), (flag, stated, action.default)
    elif isinstance(action.default, str):
        assert stated.strip("`") == action.default, (flag, stated, action.default)


def test_careless_users_flags_said_to_work_exist_with_the_defaults_stated():
    actions = _mono_actions()
    same = _careless_users_section("Flags with the same name and meaning")
    for names in _doc_flags(same):
        assert all(name in actions for name in names), f"careless_users.md: {names} is not a mono flag"
    for flag, value in re.findall(r"`(?:-[A-Za-z]/)?(--[a-z0-9-]+)` \((?:here )?(-?[0-9][0-9.]*)[,)]", same):
        assert float(value) == float(actions[flag].default), (flag, value, actions[flag].default)
    for title, default_column in (("Same name, different default or meaning", 2), ("New flags", 1)):
        for row in _table_rows(_careless_users_section(title)):
            flags = _doc_flags(row[0])
            assert flags, row
            for names in flags:
                assert all(name in actions for name in names), f"careless_users.md: {names} is not a mono flag"
            if len(flags) == 1:
                _check_default(flags[0][-1], actions[flags[0][-1]], row[default_column])


def test_careless_users_flags_said_to_be_refused_are_refused():
    actions = _mono_actions()
    refused = _doc_flags(_careless_users_section("careless flags that are not implemented"))
    assert len(refused) >= 5
    for names in refused:
        assert not any(name in actions for name in names), f"careless_users.md lists {names} as refused"
