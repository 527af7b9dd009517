"""`levit-bench worker start|stop` (a host joins or leaves a Ray cluster) and `levit-bench
cluster status` (the hosts, their CPUs and cores)."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import print_json, wide_option


def cmd_worker_start(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.fleet.nodes import start_worker

    joined = start_worker(args.address, args.platforms, args.label, args.cores, args.node_ip_address, args.workdir,
                          head_port=args.port if args.head else None)
    if args.json:
        print_json(joined)
    else:
        views.print_note(f"{joined['label']} ({joined['cpu_model']}, host {joined['host']}) "
                         f"{'started the cluster at' if args.head else 'joined'} {joined['address']}: "
                         f"{joined['cores']} cores of {', '.join(joined['platforms'])}")
    return 0


def cmd_worker_stop(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.fleet.nodes import stop_worker

    stop_worker()
    views.print_note("worker: stopped (ray stop)")
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.fleet import tasks
    from levit_bench.fleet.nodes import connected, hosts
    from levit_bench.fleet.sweep import HostLeft, answer, on_host

    with connected(args.cluster):
        found = hosts()
        asked = [(h, on_host(tasks.describe_host, h.label).remote()) for h in found if h.alive]
        described = {}
        for host, ref in asked:
            try:
                described[host.label] = answer(ref, host.node_id, host.label)
            except HostLeft:
                continue  # gone while asked: it shows without what only it could say
    rows = [{**h.as_dict(), **({k: described[h.label][k] for k in ("host", "cpu_model", "workdir")}
                               if h.label in described else {})} for h in found]
    if args.json:
        print_json(rows)
    else:
        views.print_hosts(rows, title=f"{sum(h.alive for h in found)} hosts of the cluster at {args.cluster}",
                          wide=args.wide)
    return 0


def register(commands) -> None:
    worker = commands.add_parser(
        "worker", help="join this host to a Ray cluster as a measuring host, or leave it",
        description="A fleet of hosts measures one sweep (`sweep --cluster`). Start the head anywhere with "
        "plain `ray start --head --port 6379`; then on every host that measures, `levit-bench worker start "
        "--address HEAD:6379`, which runs `ray start` advertising one unit of the resource levit-bench/PLATFORM "
        "per physical core it measures PLATFORM on, and levit-bench/host/LABEL.",
    )
    actions = worker.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    start = actions.add_parser("start", help="join the cluster at --address, or start one (--head) (ray start)",
                               description="Join this host to the Ray cluster at --address, advertising what it "
                               "measures, or with --head start a cluster with this host as its head (and a measuring "
                               "host too). Its cells run in its own work directory (--workdir, else "
                               "$LEVIT_BENCH_HOME, else ./levit-bench-out where it starts).")
    joining = start.add_mutually_exclusive_group(required=True)
    joining.add_argument("--address", metavar="HEAD:PORT", help="the head's address (ray start --head)")
    joining.add_argument("--head", action="store_true", help="start the cluster here, this host its head")
    start.add_argument("--port", type=int, default=6379, metavar="N", help="with --head: its port (default 6379)")
    start.add_argument("--platforms", nargs="+", metavar="PLATFORM",
                       help="the platforms it measures (default: every built-in one this host can: xeon on x86-64, "
                       "arm on aarch64 with NEON, gpu with a CUDA GPU)")
    start.add_argument("--label", help="its name in the cluster, the store and reports (default: its hostname)")
    start.add_argument("--cores", type=int, metavar="N", help="physical cores it offers (default: all of them)")
    start.add_argument("--node-ip-address", metavar="IP", help="the address other nodes reach it at (ray start's)")
    start.add_argument("--json", action="store_true", help="what it advertised, as JSON")
    start.set_defaults(handler=cmd_worker_start)
    stop = actions.add_parser("stop", help="leave the cluster (ray stop)",
                              description="Stop this host's Ray processes (`ray stop`).")
    stop.set_defaults(handler=cmd_worker_stop)

    cluster = commands.add_parser("cluster", help="the hosts of a Ray cluster and what they measure",
                                  description="The measuring hosts of a Ray cluster (`levit-bench worker start`).")
    cluster_actions = cluster.add_subparsers(dest="action", metavar="ACTION")
    cluster_actions.required = True
    status = cluster_actions.add_parser(
        "status", help="each host: label, CPU, fingerprint, cores per platform (total and free now), alive",
        description="Each measuring host of the cluster: its label, address, CPU model and fingerprint (asked of "
        "the host itself), the cores it offers per platform with those free now, and whether Ray has it alive.")
    status.add_argument("--cluster", required=True, metavar="HEAD:PORT",
                        help="the cluster: HEAD:PORT from one of its hosts, or ray://HEAD:10001 from outside it")
    status.add_argument("--json", action="store_true", help="the hosts as JSON")
    wide_option(status)
    status.set_defaults(handler=cmd_cluster_status)
