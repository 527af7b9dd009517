"""The CLI run in the test's own process, as several test modules need it."""

from levit_bench import cli


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`levit-bench ARGS` in this process: (exit status, stdout, stderr); argparse's usage errors
    (SystemExit) give their status too."""
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
