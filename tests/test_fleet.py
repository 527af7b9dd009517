"""A fleet on this machine: a real Ray cluster of a head and two measuring hosts (`levit-bench
worker start`, each offering one core), run inside a network namespace the test makes
(`unshare -n`, only `lo` up), so that Ray listens and connects on loopback only; the records go
into a real PostgreSQL (a unix socket, reachable from inside the namespace)."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from levit_bench.store import ResultsStore
from cli_support import run_cli
from postgres_server import new_database, running_postgres
from tiny_models import write_tiny_onnx

BIN = Path(sys.executable).parent
PORT = 6391


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "tiny.onnx"
    write_tiny_onnx(path)
    return path


def _in_namespace(script: str, tmp_path: Path, timeout: int = 400) -> str:
    """`script` (bash) inside a new network namespace with a head and hosts `a` and `b` started
    (`$LB` runs levit-bench), the cluster stopped after; its output, checked to have succeeded."""
    header = f"""
        set -euo pipefail
        ip link set lo up
        export RAY_USAGE_STATS_ENABLED=0 RAY_health_check_period_ms=1000 RAY_health_check_failure_threshold=10
        export LEVIT_BENCH_LOCKS={tmp_path / "locks"}
        LB="{BIN / "levit-bench"}"
        trap '"{BIN / "ray"}" stop --force >/dev/null 2>&1 || true' EXIT
        "{BIN / "ray"}" start --head --node-ip-address=127.0.0.1 --port={PORT} --num-cpus=0 \\
            --include-dashboard=false --disable-usage-stats >/dev/null
        for host in a b; do
            $LB --workdir {tmp_path}/$host worker start --address 127.0.0.1:{PORT} --label $host --cores 1 \\
                --node-ip-address 127.0.0.1 >/dev/null
        done
    """
    done = subprocess.run(["unshare", "-n", "bash", "-c", textwrap.dedent(header) + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_a_fleet_sweep_stores_every_row_once_with_its_hosts_label_resumes_and_reports(postgres, tiny_onnx, tmp_path,
                                                                                       capsys):
    store = new_database(postgres, "fleet_sweep")
    sweep = (f'$LB --workdir {tmp_path}/driver --store "{store}" sweep --cluster 127.0.0.1:{PORT} --platform xeon '
             f'--models levit_128s --runtimes onnxruntime openvino --rounds 2 --protocol smoke')
    out = _in_namespace(f"""
        $LB cluster status --cluster 127.0.0.1:{PORT} --json > status.json
        ss -Htan > sockets.txt
        {sweep} --json > first.json
        {sweep} > second.txt 2>&1
        {sweep.replace(" openvino", "").replace("--rounds 2", "--rounds 3")} --target 0.001 --max-rounds 4 > third.txt 2>&1
        $LB --store "{store}" sweep --cluster 127.0.0.1:{PORT} --hosts c --platform xeon --onnx {tiny_onnx} \\
            --runtimes onnxruntime --protocol smoke 2> missing.txt && exit 1 || true
    """, tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    assert sorted(h["label"] for h in status) == ["a", "b"] and all(h["alive"] for h in status)
    assert all(h["cores"]["xeon"]["total"] == 1 and h["workdir"] == str(tmp_path / h["label"]) for h in status)
    for line in (tmp_path / "sockets.txt").read_text().splitlines():  # every socket on loopback (or unbound)
        local, peer = line.split()[3:5]
        assert local.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0", "*", "[::]"), line
        assert peer.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0", "*", "[::]"), line

    # hosts x runtimes x 2 rounds, then onnxruntime's rounds 3 and 4 on each host: --target asks for
    # more rounds while an interval is wider than ±0.1%, which three smoke rounds never reach
    records = ResultsStore(store, create=False).records()
    assert len(records) == 2 * 2 * 2 + 2 * 2 and len({r["uid"] for r in records}) == 12
    cells = sorted((r["host_label"], r["runtime"], r["round"]) for r in records)
    assert cells == sorted([(h, rt, n) for h in "ab" for rt in ("onnxruntime", "openvino") for n in (1, 2)]
                           + [(h, "onnxruntime", n) for h in "ab" for n in (3, 4)])
    third = (tmp_path / "third.txt").read_text()
    assert "4 cell-rounds already measured, skipped" in third and "still wider than ±0.1% after 4 rounds" in third, third
    assert all(r["status"] == "ok" and r["max_abs_diff"] < 1e-4 and r["model"] == "levit_128s" for r in records)
    assert len(json.loads((tmp_path / "first.json").read_text())) == 8
    second = (tmp_path / "second.txt").read_text()
    assert "8 cell-rounds already measured, skipped" in second, second
    missing = (tmp_path / "missing.txt").read_text().strip().splitlines()
    assert len(missing) == 1 and "no host labelled c in the cluster (its hosts: a, b)" in missing[0], missing
    assert out == ""

    # reports across hosts, from the shared store: each host apart, and one compared with the other
    code, _, err = run_cli(capsys, "--workdir", tmp_path / "driver", "--store", store, "report", "--out",
                           tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert code == 0 and f"<td>a ({records[0]['host']})</td>" in page and f"<td>b ({records[0]['host']})</td>" in page
    for label in "ab":  # a Figure 1 of each host: no line joins two hosts' points
        assert (tmp_path / "report" / f"tradeoff-xeon-{label}-{_slug(records[0])}.png").is_file()
    code, out, err = run_cli(capsys, "--workdir", tmp_path / "driver", "--store", store, "compare", "--by", "host",
                             "a", "b", "--json")
    rows = json.loads(out)
    assert code == 0 and sorted(r["runtime"] for r in rows) == ["onnxruntime", "openvino"], err


def _slug(record: dict) -> str:
    """The CPU and fingerprint part of a host's figure name (`tradeoff-xeon-a-AMD-EPYC-c7179b.png`)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{record['cpu_model']} ({record['host'][:6]})").strip("-.")


def test_a_host_killed_during_its_cell_loses_no_cell(postgres, tiny_onnx, tmp_path):
    """Host b's raylet is killed while b measures: its cells go to a, the other host of its CPU."""
    store = new_database(postgres, "fleet_kill")
    _in_namespace(f"""
        here=$(readlink /proc/$$/ns/net)  # b's raylet: in this namespace, with b's resource
        raylet=$(for p in $(pgrep -x raylet); do [ "$(readlink /proc/$p/ns/net)" = "$here" ] \\
            && tr '\\0' ' ' < /proc/$p/cmdline | grep -q 'host/b' && echo $p; done)
        [ -n "$raylet" ]
        $LB calibrate >/dev/null  # once, before: two hosts calibrating at once on two cores starve Ray's heartbeats
        $LB --workdir {tmp_path}/driver --store "{store}" sweep --cluster 127.0.0.1:{PORT} --platform xeon \\
            --onnx {tiny_onnx} --runtimes onnxruntime openvino --protocol default --rounds 1 > sweep.txt 2>&1 &
        sweep=$!
        for _ in $(seq 1200); do  # until both hosts are measuring a cell (after calibrating)
            [ "$(pgrep -fc "levit_bench[.]runners[.]worker" || true)" -ge 2 ] && break
            sleep 0.1
        done
        [ "$(pgrep -fc "levit_bench[.]runners[.]worker" || true)" -ge 2 ]
        sleep 1
        kill -9 $raylet
        wait $sweep
        # SIGTERM (Ctrl-C's path: a background job of this shell ignores SIGINT) while a cell runs on a:
        # the sweep ends at once (130), its cell's process with it
        $LB --workdir {tmp_path}/driver --store "{store}" sweep --cluster 127.0.0.1:{PORT} --platform xeon \
            --onnx {tiny_onnx} --runtimes onnxruntime --protocol default --force > interrupted.txt 2>&1 &
        sweep=$!
        for _ in $(seq 600); do
            [ "$(pgrep -fc "levit_bench[.]runners[.]worker" || true)" -ge 1 ] && break
            sleep 0.1
        done
        kill -TERM $sweep
        status=0; wait $sweep || status=$?
        echo "interrupted: $status" >> interrupted.txt
        sleep 3
        echo "workers left: $(pgrep -fc "levit_bench[.]runners[.]worker" || true)" >> interrupted.txt
    """, tmp_path)
    records = ResultsStore(store, create=False).records()
    assert sorted(r["runtime"] for r in records) == ["onnxruntime", "onnxruntime", "openvino", "openvino"]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert len({r["uid"] for r in records}) == 4
    labels = [r["host_label"] for r in records]
    assert labels.count("a") >= 3, labels  # b's cell in progress (and any b had not begun) measured on a
    moved = [r for r in records if r.get("planned_on")]
    assert moved and all(r["planned_on"] == "b" and r["host_label"] == "a" for r in moved)
    interrupted = (tmp_path / "interrupted.txt").read_text()
    assert "interrupted: 130" in interrupted and "workers left: 0" in interrupted, interrupted
    assert "levit-bench sweep: interrupted" in interrupted
    assert len(ResultsStore(store, create=False).records()) == 4  # nothing stored of the cell it stopped


@pytest.mark.parametrize("found,wanted,message", [
    ([("a", True), ("a", True)], None, "more than one host of the cluster is labelled a: give each host its own"),
    ([("a", True), ("b", False)], ["b"], "no host labelled b in the cluster (its hosts: a)"),
    ([("a", True)], ["a", "c"], "no host labelled c in the cluster (its hosts: a)"),
    ([("g", True)], None, "no host of the cluster measures xeon (hosts: g)"),
])
def test_the_hosts_a_fleet_sweep_takes_are_checked_in_one_line(found, wanted, message):
    from levit_bench.fleet.nodes import FleetError, Host
    from levit_bench.fleet.sweep import choose_hosts

    hosts = [Host(label, f"node-{i}", "127.0.0.1", alive, {"gpu": (1, 1)} if label == "g" else {"xeon": (2, 2)})
             for i, (label, alive) in enumerate(found)]
    with pytest.raises(FleetError) as refused:
        choose_hosts(hosts, wanted, "xeon")
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_fleet_sweeps_cells_behind_rpc_from_the_driver_not_on_its_hosts(tmp_path, capsys):
    """TVM's ARM boards are reached through their RPC address (or tracker) as in a sweep without
    --cluster: with only such cells, no cluster is asked for (none answers at this address), and
    the device's address is what is checked, in one line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, _, err = run_cli(capsys, "--workdir", tmp_path, "sweep", "--cluster", "127.0.0.1:9", "--platform", "arm",
                           "--models", "levit_128s", "--runtimes", "tvm", "--rpc", f"127.0.0.1:{closed}",
                           "--protocol", "smoke")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and f"no TVM RPC server at 127.0.0.1:{closed}" in lines[0], err
