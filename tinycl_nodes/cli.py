"""The ``tinycl`` command: experiments, benchmarks (and, with the graph, launch).

A user's mistake (missing data, bad model file, bad value) ends in one ``error: …`` line and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Streaming work is one sample at a time: single-threaded BLAS is faster on 64-d vectors and
# leaves the cores to onnxruntime and the graph's processes (set before numpy is loaded).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .core.errors import TinyclError  # noqa: E402


def _experiment_tinyndc(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .experiments import tinyndc as exp
    from .experiments.report import tinyndc_tables

    console = Console(width=None if sys.stdout.isatty() else 132)
    extractor = exp.load_extractor(args.model)
    with console.status(f"extracting features with {extractor.path.name} …"):
        feats = exp.extract_features(extractor, args.data)
    protocol = exp.Protocol(labels_per_class=args.labels)
    sweep = tuple(int(k) for k in args.sweep.split(",")) if args.sweep else ()
    with console.status("running the stream …") as status:
        result = exp.run_experiment(feats, seeds=args.seeds, protocol=protocol, sweep=sweep,
                                    progress=lambda msg: (console.log(msg), status.update(msg)))
    result["model"] = extractor.path.name
    out = Path(args.out)
    exp.write_json(result, out)
    png = out.with_suffix(".png")
    exp.plot_curves(result, png)
    for table in tinyndc_tables(result):
        console.print(table)
    console.print(f"wrote {out} and {png}")
    return 0


def _experiment_tinyrce(args: argparse.Namespace) -> int:
    from .experiments import tinyrce

    return tinyrce.run(args)


def _pair(args: argparse.Namespace) -> int:
    """The label app's pairing URL and QR code again; list, revoke or renew paired phones."""
    from .label_app.pairing import FILE, Pairing, qr_text
    from .nodes.runner import state_dir

    folder = Path(state_dir(args.state_dir, args.namespace))
    if not (folder / FILE).is_file():
        print(f"tinycl pair: no pairing in {folder} (start the label_app first, or give --state-dir)",
              file=sys.stderr)
        return 2
    pairing = Pairing(folder)
    if args.revoke:
        if not pairing.revoke(args.revoke):
            print(f"tinycl pair: no paired phone {args.revoke!r} (see tinycl pair --list)", file=sys.stderr)
            return 2
        print(f"phone {args.revoke} unpaired")
        return 0
    if args.renew:
        from .label_app.pairing import new_token

        pairing.token, pairing.devices = new_token(), {}
        pairing.info.pop("url", None)
        pairing.save()
        print("new pairing secret: every phone is unpaired; restart the label_app, then run tinycl pair")
        return 0
    if args.list:
        for d in pairing.public():
            print(f"{d['id']}  paired {time.strftime('%Y-%m-%d %H:%M', time.localtime(d['paired_s']))}  "
                  f"last seen {time.strftime('%Y-%m-%d %H:%M', time.localtime(d['seen_s']))}  {d['agent'][:60]}")
        return 0
    url = pairing.info.get("url")
    if not url:
        print("tinycl pair: the label_app has not written its address yet (is it running?)", file=sys.stderr)
        return 2
    print(f"Scan with the phone to answer the robot's questions:\n{qr_text(url, colour=not args.plain)}")
    print(f"label app: open {url}")
    if pairing.info.get("fingerprint"):
        print(f"TLS certificate fingerprint (SHA-256): {pairing.info['fingerprint']}")
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    from .fleet.aggregator import main as aggregate_main

    return aggregate_main(args.args)


def _demo_fleet(args: argparse.Namespace) -> int:
    from .fleet.demo import main as demo_fleet_main

    return demo_fleet_main(args.args)


def _launch(args: argparse.Namespace) -> int:
    from .launcher import launch

    return launch(args.graph, args.config, args.namespace, args.param)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .demo import run_demo

    console = Console(width=None if sys.stdout.isatty() else 132)
    result = run_demo(args.config, args.param, args.out, compare=not args.no_compare, console=console,
                      graph_name=args.graph)
    ok = result["graph"]["lost"] == 0 and all(c == 0 for c in result["graph"]["exit_codes"].values())
    return 0 if ok else 1


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tinycl", description="continual learning on the edge")
    sub = ap.add_subparsers(dest="command", required=True)

    exp = sub.add_parser("experiment", help="reproduce a paper's experiment on real data")
    exp_sub = exp.add_subparsers(dest="experiment", required=True)
    t = exp_sub.add_parser("tinyndc", help="TinyNDC protocol on MNIST (digits 6–9 arrive as new classes)")
    t.add_argument("--seeds", type=int, default=5)
    t.add_argument("--labels", type=int, default=10, help="labelled samples per class (default 10)")
    t.add_argument("--sweep", default="1,10,50,100", help="labels-per-class sweep ('' to skip)")
    t.add_argument("--model", default="mnist_0to5_fp32", help="frozen extractor: name or .onnx path")
    t.add_argument("--data", default=None, help="data root holding mnist/ (default $TINYCL_DATA or ../shared/data)")
    t.add_argument("--out", default="results/tinyndc.json")
    t.set_defaults(func=_experiment_tinyndc)

    la = sub.add_parser("launch", help="start a graph's nodes as processes (no ROS 2 needed)")
    la.add_argument("graph", help="tinyndc | tinyrce")
    la.add_argument("--config", default=None, help="ROS 2 parameter file (default config/<graph>.yaml)")
    la.add_argument("--namespace", default="/", help="e.g. /robot1/tinycl")
    la.add_argument("-p", "--param", action="append", default=[], help="node.name:=value (repeatable)")
    la.set_defaults(func=_launch)

    d = sub.add_parser("demo", help="the TinyNDC graph on MNIST, scored against the in-process run")
    d.add_argument("--graph", default="tinyndc", choices=["tinyndc", "tinyndc_board"],
                   help="tinyndc, or tinyndc_board (the C core as the learner)")
    d.add_argument("--config", default=None)
    d.add_argument("-p", "--param", action="append", default=[], help="node.name:=value (repeatable)")
    d.add_argument("--out", default="results/demo.json")
    d.add_argument("--no-compare", action="store_true", help="skip the in-process run")
    d.set_defaults(func=_demo)

    from .experiments import tinyrce as _tinyrce

    r = exp_sub.add_parser("tinyrce", help="TinyRCE vs backprop on HAR or CWRU (forward-only, label requests)")
    _tinyrce.add_arguments(r)
    r.set_defaults(func=_experiment_tinyrce)

    from .experiments import asking as _asking

    q = exp_sub.add_parser("asking", help="questions per 1,000 samples and accuracy: grouped label requests vs "
                                          "the old policy (HAR new user, MNIST RCE stream)")
    _asking.add_arguments(q)
    q.set_defaults(func=lambda a: _asking.run(a))

    pr = sub.add_parser("pair", help="the label app's pairing QR code and URL again; list / revoke paired phones")
    pr.add_argument("--state-dir", default=None, help="the label_app's state_dir (default $ROS_HOME/tinycl/<ns>)")
    pr.add_argument("--namespace", default="/", help="the graph's namespace (for the default state folder)")
    pr.add_argument("--list", action="store_true", help="list the paired phones")
    pr.add_argument("--revoke", metavar="ID", help="unpair one phone (its id from --list)")
    pr.add_argument("--renew", action="store_true", help="a new pairing secret: unpairs every phone")
    pr.add_argument("--plain", action="store_true", help="QR code without terminal colours (light terminals only)")
    pr.set_defaults(func=_pair)

    ag = sub.add_parser("aggregate", help="federated aggregator of the fleet's heads over MQTT",
                        add_help=False)
    ag.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the aggregator (see --help)")
    ag.set_defaults(func=_aggregate)

    df = sub.add_parser("demo-fleet", help="three devices learn different digits; the aggregator merges them",
                        add_help=False)
    df.add_argument("args", nargs=argparse.REMAINDER)
    df.set_defaults(func=_demo_fleet)

    b = sub.add_parser("bench", help="per-stage time per sample, in process")
    b.add_argument("--data", default=None)
    b.add_argument("--samples", type=int, default=2000)
    b.add_argument("--out", default="results/bench.json")
    b.add_argument("--no-graph", dest="graph", action="store_false", help="skip the multi-process graph bench")
    b.add_argument("--no-fleet", dest="fleet", action="store_false", help="skip the MQTT fleet bench")
    b.set_defaults(func=_bench)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["aggregate"]:  # these parse their own arguments (and their --help)
        return _aggregate(argparse.Namespace(args=argv[1:]))
    if argv[:1] == ["demo-fleet"]:
        return _demo_fleet(argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    if getattr(args, "seeds", 1) < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except TinyclError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
