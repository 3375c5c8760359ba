"""The ``tinycl`` command: experiments, benchmarks (and, with the graph, launch).

A user's mistake (missing data, bad model file, bad value) ends in one ``error: …`` line and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
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
    extractor = exp.load_extractor(args.model, args.dataset, args.split)
    with console.status(f"extracting features with {extractor.path.name} …"):
        feats = exp.extract_features(extractor, args.data, args.dataset, args.split)
    protocol = exp.Protocol(labels_per_class=args.labels)
    sweep = tuple(int(k) for k in args.sweep.split(",")) if args.sweep else ()
    with console.status("running the stream …") as status:
        result = exp.run_experiment(feats, seeds=args.seeds, protocol=protocol, sweep=sweep,
                                    progress=lambda msg: (console.log(msg), status.update(msg)))
    result["model"] = extractor.path.name
    result["protocol"].update(dataset=args.dataset, split=args.split)
    out = Path(args.out or f"results/tinyndc_{args.dataset}_{args.split}.json")
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
    t.add_argument("--model", default=None,
                   help="frozen extractor: name or .onnx path (default: the protocol's, e.g. mnist_0to5_fp32)")
    t.add_argument("--data", default=None, help="data root holding mnist/ (default $TINYCL_DATA or ../shared/data)")
    t.add_argument("--dataset", default="mnist", help="mnist | fashion_mnist | an image folder")
    t.add_argument("--split", default="test", choices=["test", "train", "holdout"],
                   help="test: stream from the test split (MNIST); train: validation protocol from the "
                        "training split (what selection uses); holdout: the training split's second stream pool")
    t.add_argument("--out", default=None, help="default results/tinyndc_<dataset>_<split>.json")
    t.set_defaults(func=_experiment_tinyndc)

    from .experiments import latent as _latent
    from .experiments import select as _select

    s = exp_sub.add_parser("select", help="choose every tuned constant on the training-split protocol")
    _select.add_arguments(s)
    s.set_defaults(func=lambda a: _select.main(a))
    lr = exp_sub.add_parser("latent", help="latent replay at a layer of the frozen model vs final-feature replay and SLDA")
    _latent.add_arguments(lr)
    lr.set_defaults(func=lambda a: _latent.main(a))

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

    ag = sub.add_parser("aggregate", help="federated aggregator of the fleet's heads over MQTT",
                        add_help=False)
    ag.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the aggregator (see --help)")
    ag.set_defaults(func=_aggregate)

    df = sub.add_parser("demo-fleet", help="three devices learn different digits; the aggregator merges them",
                        add_help=False)
    df.add_argument("args", nargs=argparse.REMAINDER)
    df.set_defaults(func=_demo_fleet)

    from .experiments import design as _design

    dz = sub.add_parser("design", help="TyBox-style: cut, pruning, int8 frozen part and replay size for a RAM/flash budget")
    _design.add_arguments(dz)
    dz.set_defaults(func=lambda a: _design.main(a))

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
