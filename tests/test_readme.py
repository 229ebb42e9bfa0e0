"""The README's example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert set(namespace["labels"]) <= {-1, 1}
    assert namespace["normality"].shape == (5_000,)


ROOT = README.parent


def _section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_set_up_is_the_two_scripts():
    setup = _section(README.read_text(), "Set-up")
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    assert [command.strip() for command in commands] == ["bash scripts/demo.sh",
                                                         "bash scripts/test.sh"]
    assert (ROOT / "scripts" / "demo.sh").is_file() and (ROOT / "scripts" / "test.sh").is_file()


def test_readme_pyproject_and_docs_state_one_python_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r'^requires-python = ">=(3\.\d+)"$', pyproject, flags=re.M).group(1)
    target = re.search(r'^target-version = "py(\d+)"$', pyproject, flags=re.M).group(1)
    assert target == minimum.replace(".", "")  # ruff checks the syntax of that version
    for page in (README, ROOT / "docs" / "index.md"):
        text = " ".join(page.read_text().split())  # line breaks as spaces
        stated = set(re.findall(r"Python (3\.\d+)(?: or newer|\+)", text))
        assert stated == {minimum}, f"{page.name} states Python {sorted(stated)}"
        assert "CI tests Python 3.11" in text


def test_readme_says_what_the_constraints_pin_and_how_to_get_each_torch_build():
    constraints = (ROOT / "constraints.txt").read_text()
    pin = re.search(r"^torch==(\S+)$", constraints, flags=re.M).group(1)
    assert "+" not in pin  # a version, not a build: pip picks the platform's default build
    setup = " ".join(_section(README.read_text(), "Set-up").split())
    assert "CPU wheel through" not in setup
    assert "pin versions, not builds" in setup and "CUDA build" in setup
    assert (f"pip install torch=={pin} --index-url https://download.pytorch.org/whl/cpu"
            in setup)
    assert "https://pytorch.org/get-started/locally/" in setup
    assert "CPU wheel" not in (ROOT / "scripts" / "setup_env.sh").read_text()


def test_the_test_script_runs_no_benchmark():
    # the quality runner is smoke-tested by tests/test_benchmarks.py in seconds
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "benchmarks." not in script.split("set -euo pipefail", 1)[1]
