"""Every command of the README's Commands section, run as written in a fresh directory.

The section's synopsis names every command; the block after it (marked for this test) gives
each one concretely, on levit_128s with the smoke protocol and tiny data. Each line runs as a
real process, in order, in one directory: exit 0, no traceback, no internal error. The first
line of each command that takes `--json` runs again with it and must print JSON, except for
the commands that make an artifact (their `--json` is checked where the artifact is:
test_export, test_quantize, test_tvm_tuning). `levit-bench --help` and every `COMMAND --help` are printed too, and every
command the parser knows must be in the synopsis and in the block, so a new command joins here.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from levit_bench import cli
from levit_bench.devices import arm_emulator
from tiny_models import write_tiny_onnx

README = Path(__file__).parent.parent / "README.md"
MARKER = "<!-- tests/test_readme_commands.py runs the next block -->"
SUB_ACTIONS = ("results", "data", "arm-emulator", "worker", "cluster")  # commands whose next word is an action
# their --json is checked where it matters (test_export, test_quantize, test_tvm_tuning, test_fleet): an
# artifact made again, or a host that joins twice
ONCE_ONLY = {"export", "quantize", "tune", "worker start"}


def _section() -> str:
    text = README.read_text()
    start = text.index("\n## Commands\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(text: str) -> list[tuple[int, str]]:
    """(offset, body) of every ```sh block."""
    return [(m.start(), m.group(1)) for m in re.finditer(r"```sh\n(.*?)```", text, re.S)]


def _command_lines(body: str) -> list[str]:
    """The `levit-bench ...` lines of a block, continuations joined, comments dropped."""
    lines, current = [], ""
    for raw in body.splitlines():
        line = raw.split("  #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        current = f"{current} {line.strip()}".strip() if current else line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if current.startswith("levit-bench"):
            lines.append(current)
        current = ""
    return lines


def _command(words: list[str]) -> str:
    """`results merge`, `arm-emulator start`, `run`, `--help`: what a line invokes."""
    rest = list(words[1:])
    while rest and rest[0] in ("--workdir", "--platforms"):
        rest = rest[2:]
    if not rest:
        return ""
    if rest[0] in SUB_ACTIONS and len(rest) > 1 and not rest[1].startswith("-"):
        return f"{rest[0]} {rest[1]}"
    return rest[0]


def _synopsis_commands(body: str) -> set[str]:
    names = set()
    for line in _command_lines(body):
        words = line.split()
        if len(words) > 2 and words[1] in SUB_ACTIONS and "|" in words[2]:
            names |= {f"{words[1]} {action}" for action in words[2].split("|")}
        else:
            names.add(_command(line.replace("[", " ").replace("]", " ").replace("|", " ").split()))
    return names


def _parser_commands() -> dict[str, object]:
    """Every command and action the CLI's parser knows, with its parser."""
    found = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    label = f"{prefix} {name}".strip()
                    found[label] = sub
                    walk(sub, label)

    walk(cli.build_parser(), "")
    return found


def _tour() -> list[str]:
    section = _section()
    marker = section.index(MARKER)
    following = [body for offset, body in _blocks(section) if offset > marker]
    assert following, "no block after the marker in the README's Commands section"
    return _command_lines(following[0])


@pytest.fixture(scope="module")
def arm_root():
    """The arm64 root `arm-emulator start` boots, built once into the real cache (as test_arm_emulator)."""
    return arm_emulator.ensure_root(on_step=print)


def _fresh_out(words: list[str]) -> list[str]:
    """The line again with `--out DIR` made `DIR-json`: a second run into the first's DIR is refused."""
    if "--out" not in words:
        return words
    at = words.index("--out") + 1
    return [*words[:at], f"{words[at]}-json", *words[at + 1:]]


def _run(words: list[str], cwd: Path, env: dict, namespace: str) -> tuple[subprocess.CompletedProcess, float]:
    """The line as a process in the network namespace `namespace` (only its loopback: Ray, which
    the fleet lines start, keeps to it)."""
    started = time.monotonic()
    result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "levit_bench", *words[1:]],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return result, time.monotonic() - started


@pytest.fixture()
def namespace():
    """A network namespace of this test's own with its loopback up."""
    name = f"levit-readme-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "exec", name, str(Path(sys.executable).with_name("ray")), "stop", "--force"],
                       capture_output=True, timeout=120)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _faults(line: str, result: subprocess.CompletedProcess) -> list[str]:
    said = result.stdout + result.stderr
    faults = []
    if result.returncode != 0:
        faults.append(f"exit {result.returncode}")
    if "Traceback" in said:
        faults.append("a traceback")
    if "internal error" in said:
        faults.append("an internal error")
    if faults:
        tail = " | ".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-3:])
        return [f"{line}: {', '.join(faults)}: {tail}"]
    return []


def test_the_synopsis_and_the_block_name_every_command():
    section = _section()
    synopsis = _synopsis_commands(_blocks(section)[0][1])
    tour = {_command(shlex.split(line)) for line in _tour()}
    known = set(_parser_commands()) - set(SUB_ACTIONS)  # `results` itself is a command, `data` is not
    known |= {"results", "--help"}
    assert known - synopsis == set(), "commands missing from the README's synopsis"
    assert synopsis - tour == set(), "commands of the synopsis that the runnable block never runs"


def test_every_command_prints_its_help(capsys):
    for command, parser in _parser_commands().items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            cli.main([*command.split(), "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0, command
        assert out.startswith(f"usage: levit-bench {command}"), (command, out[:200])


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_the_top_level_help_runs_as_a_process(flag):
    result = subprocess.run([sys.executable, "-m", "levit_bench", flag], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--workdir" in result.stdout and "compare" in result.stdout and not result.stderr


def test_every_readme_command_runs_as_written(tmp_path, arm_root, namespace):
    cache = Path(os.environ["LEVIT_BENCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "arm64-root").symlink_to(arm_root, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "LEVIT_BENCH_HOME"}  # ./levit-bench-out, as a user's
    write_tiny_onnx(tmp_path / "my_net.onnx")  # `my_net.onnx`, a user's own model
    parsers = _parser_commands()
    faults, times, with_json = [], [], set()
    try:
        for line in _tour():
            words = shlex.split(line)
            result, seconds = _run(words, tmp_path, env, namespace)
            times.append((seconds, line))
            faults += _faults(line, result)
            command = _command(words)
            takes_json = command in parsers and "--json" in parsers[command]._option_string_actions
            if takes_json and "--json" not in words and command not in ONCE_ONLY | with_json:
                with_json.add(command)
                result, seconds = _run([*_fresh_out(words), "--json"], tmp_path, env, namespace)
                times.append((seconds, f"{line} --json"))
                faults += _faults(f"{line} --json", result)
                try:
                    json.loads(result.stdout)
                except ValueError:
                    faults.append(f"{line} --json: stdout is not JSON: {result.stdout[:200]!r}")
    finally:
        subprocess.run([sys.executable, "-m", "levit_bench", "arm-emulator", "stop"], env=env, capture_output=True,
                       timeout=120)
    print("\n".join(f"{seconds:6.1f} s  {line}" for seconds, line in sorted(times, reverse=True)))
    assert faults == [], "\n".join(faults)
    assert (tmp_path / "levit-bench-out" / "reports" / "index.html").is_file()
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "runs" / "tiny" / "best.pth").is_file()
