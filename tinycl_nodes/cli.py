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

from .arg_types import count, counts, number, output_file  # noqa: E402
from .core.errors import TinyclError  # noqa: E402


def _experiment_tinyndc(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .datasets import load_image_folder
    from .experiments import tinyndc as exp
    from .experiments.report import tinyndc_tables
    from .model_card import foreign_dataset_warning, trained_on_note

    console = Console(width=None if sys.stdout.isatty() else 132)
    extractor = exp.load_extractor(args.model, args.dataset, args.split)
    folder_protocol = False
    with console.status(f"extracting features with {extractor.path.name} …"):
        if args.folder:
            from .experiments.image_folder import folder_features

            feats, folder = folder_features(extractor, args.folder, args.test_fraction)
            dataset, class_names = folder.name, list(folder.classes)
        elif args.bag:
            from .datasets.rosbag_images import load_bag_images
            from .experiments.image_folder import split_features

            pre = extractor.preprocessing
            images, y, class_names = load_bag_images(args.bag, args.bag_topic, args.truth_topic,
                                                     pre.size if pre is not None else None)
            feats, dataset = split_features(extractor, images, y, args.test_fraction), Path(args.bag).name
        else:
            feats = exp.extract_features(extractor, args.data, args.dataset, args.split)
            dataset = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}.get(args.dataset, Path(args.dataset).name)
            folder_protocol = args.dataset not in exp.DATASETS      # an image folder, by its training-split protocol
            class_names = list(load_image_folder(args.dataset, verify=False).classes) if folder_protocol else \
                [str(c) for c in range(10)]
    warning = foreign_dataset_warning(extractor.card, extractor.path.name, dataset, class_names)
    if warning:
        console.print(warning, style="yellow")
    own = trained_on_note(extractor.card, extractor.path.name, args.folder or args.dataset) \
        if args.folder or (not args.bag and args.split != "test") else None
    if own:
        console.print(f"note: {own}", style="yellow", soft_wrap=True)
    old = _old_classes(args.old_classes, extractor.card.class_names, class_names,
                       bool(args.folder or args.bag) or folder_protocol)
    exp.check_labelled(feats.train_y, class_names,
                       {"--labels": args.labels, **({"--sweep": max(args.sweep)} if args.sweep else {})})
    stream, score_last, note = exp.fit_stream(feats.test_y.size, args.stream_length, args.score_last, dataset)
    if note:
        console.print(note, style="yellow", soft_wrap=True)
    protocol = exp.Protocol(labels_per_class=args.labels, stream_length=stream, score_last=score_last,
                            old_classes=old, dataset=dataset)
    with console.status("running the stream …") as status:
        result = exp.run_experiment(feats, seeds=args.seeds, protocol=protocol, sweep=args.sweep,
                                    progress=lambda msg: (console.log(msg), status.update(msg)))
    result["model"] = extractor.path.name
    result["dataset"], result["class_names"] = dataset, class_names
    result["protocol"].update(dataset=dataset, split=args.split)
    if dataset != "MNIST":
        result["paper"] = {"sweep": {}}   # the paper's numbers are MNIST's
    out = Path(args.out or f"results/tinyndc_{Path(args.dataset).name}_{args.split}.json")   # a folder: its name
    exp.write_json(result, out)
    png = out.with_suffix(".png")
    exp.plot_curves(result, png)
    for table in tinyndc_tables(result):
        console.print(table)
    console.print(f"wrote {out} and {png}")
    return 0


def _old_classes(given: str | None, card_names: list[str] | None, names: list[str], folder: bool) -> tuple[int, ...]:
    """``--old-classes`` (ids or names), else the card's classes found in the dataset, else MNIST's 0–5; not every
    class of the dataset (the protocol is about the new ones)."""
    if given:
        from .datasets import class_ids

        old = class_ids(given, names, "--old-classes")
        if not old:          # ',' made every class new, without a word (forgetting then null)
            raise TinyclError(f"--old-classes: no class in {given!r}: give those the backbone knows (names or ids)")
    else:
        known = [names.index(c) for c in (card_names or []) if c in names]
        if not known and folder:
            raise TinyclError("--old-classes: the model card names no class of this folder: say which classes "
                              "the backbone knows (names or ids)")
        old = tuple(sorted(known)) if known else (0, 1, 2, 3, 4, 5)
    if len(set(old)) >= len(names):
        source = "--old-classes" if given else "--old-classes (the model card's)"
        raise TinyclError(f"{source}: {', '.join(names[c] for c in sorted(set(old)))} are all the classes of the "
                          f"dataset, so no new class is left to learn: give --old-classes with only those the backbone "
                          f"knows")
    return old


def _experiment_tinyrce(args: argparse.Namespace) -> int:
    from .experiments import tinyrce

    return tinyrce.run(args)


def _pair(args: argparse.Namespace) -> int:
    """The label app's pairing URL and QR code again; list, revoke or renew paired phones."""
    from .label_app.pairing import FILE, Pairing, qr_text, read_pairing
    from .nodes.runner import state_dir

    folder = Path(state_dir(args.state_dir, args.namespace))
    if not (folder / FILE).is_file():
        print(f"tinycl pair: no pairing in {folder} (start the label_app first, or give --state-dir)",
              file=sys.stderr)
        return 2
    try:
        read_pairing(folder / FILE)       # a file the app would set aside: said, and left to the app
    except ValueError as exc:
        print(f"tinycl pair: {folder / FILE} cannot be used ({exc}): the label_app sets it aside and makes a new "
              f"secret when it starts", file=sys.stderr)
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


def _fleet(args: argparse.Namespace) -> int:
    from .fleet.broker import main as fleet_main

    return fleet_main(args.args)


def _demo_fleet(args: argparse.Namespace) -> int:
    from .fleet.demo import main as demo_fleet_main

    return demo_fleet_main(args.args)


def _launch(args: argparse.Namespace) -> int:
    from .graphs import LAUNCH_ARGUMENTS
    from .launcher import launch

    params = list(args.param)
    if args.port is not None:   # ros2 launch's port:= (graphs.LAUNCH_ARGUMENTS), as an option
        port = LAUNCH_ARGUMENTS.get(args.graph, {}).get("port")
        if port is None:
            with_app = ", ".join(g for g, a in LAUNCH_ARGUMENTS.items() if "port" in a)
            raise TinyclError(f"launch: --port: graph {args.graph} has no label app (graphs with one: {with_app})")
        params.append(f"{port.node}.{port.parameter}:={args.port}")
    return launch(args.graph, args.config, args.namespace, params, args.camera, args.bag)


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
    t = exp_sub.add_parser("tinyndc", help="TinyNDC protocol on MNIST (digits 6–9 arrive as new classes) or "
                                           "an image folder")
    t.add_argument("--seeds", type=count(1), default=5)
    t.add_argument("--labels", type=count(1), default=10, help="labelled samples per class (default 10)")
    images = t.add_mutually_exclusive_group()
    images.add_argument("--folder", default=None, help="an image folder root/<class name>/*.png|jpg instead of MNIST")
    images.add_argument("--bag", default=None, help="a rosbag2 of labelled camera images instead of MNIST")
    t.add_argument("--bag-topic", default="/camera/image_raw", help="bag: its Image or CompressedImage topic")
    t.add_argument("--truth-topic", default="/ground_truth", help="bag: its tinycl_nodes/GroundTruth topic "
                                                                   "(same stamps as the images)")
    t.add_argument("--test-fraction", type=number(0.01, 1.0), default=0.5,
                   help="folder or bag: share of each class that forms the stream and held-out part (default 0.5)")
    t.add_argument("--old-classes", default=None,
                   help="classes the backbone knows, ids or names (default: the model card's, MNIST 0–5)")
    t.add_argument("--stream-length", type=count(1), default=8000, help="stream samples (default 8000)")
    t.add_argument("--score-last", type=count(1), default=1000, help="scoring window: the last N predictions")
    t.add_argument("--sweep", type=counts(1), default=(1, 10, 50, 100), help="labels-per-class sweep, "
                                                                             "comma-separated ('' to skip)")
    t.add_argument("--model", default=None,
                   help="frozen extractor: name or .onnx path (default: the protocol's, e.g. mnist_0to5_fp32)")
    t.add_argument("--data", default=None, help="data root holding mnist/ (default $TINYCL_DATA or ../shared/data)")
    t.add_argument("--dataset", default="mnist", help="mnist | fashion_mnist | an image folder")
    t.add_argument("--split", default="test", choices=["test", "train", "holdout"],
                   help="test: stream from the test split (MNIST); train: validation protocol from the "
                        "training split (what selection uses); holdout: the training split's second stream pool")
    t.add_argument("--out", type=output_file, default=None, help="default results/tinyndc_<dataset>_<split>.json")
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
    la.add_argument("graph", help="a graph of tinycl_nodes/graphs.py: tinyndc, tinyrce, camera, …")
    la.add_argument("--config", default=None, help="ROS 2 parameter file (default config/<graph>.yaml)")
    la.add_argument("--namespace", default="/", help="e.g. /robot1/tinycl")
    la.add_argument("-p", "--param", action="append", default=[], help="node.name:=value (repeatable)")
    la.add_argument("--port", type=count(0), default=None,
                    help="the label app's port (graphs with a label app; 0: any free port): ros2 launch's port:=")
    own_sensor = la.add_mutually_exclusive_group()
    own_sensor.add_argument("--camera", metavar="DEVICE", default=None,
                            help="this machine's camera is the sensor (OpenCV: an index such as 0, a device path, a "
                                 "network camera's URL): a sensor node reads it, also in the camera graph, which has "
                                 "no sensor of its own (without ROS 2 there is no camera driver to publish image_raw)")
    own_sensor.add_argument("--bag", metavar="BAG", default=None,
                            help="a rosbag2 (folder or .mcap) of camera frames is the sensor, played at the pace it "
                                 "was recorded, as --camera does a camera (its topic: -p sensor.bag_topic:=…, "
                                 "default /camera/image_raw)")
    la.set_defaults(func=_launch)

    d = sub.add_parser("demo", help="the TinyNDC graph on MNIST, scored against the in-process run")
    d.add_argument("--graph", default="tinyndc", choices=["tinyndc", "tinyndc_board"],
                   help="tinyndc, or tinyndc_board (the C core as the learner)")
    d.add_argument("--config", default=None)
    d.add_argument("-p", "--param", action="append", default=[], help="node.name:=value (repeatable)")
    d.add_argument("--out", type=output_file, default="results/demo.json")
    d.add_argument("--no-compare", action="store_true", help="skip the in-process run")
    d.set_defaults(func=_demo)

    from .experiments import tinyrce as _tinyrce

    r = exp_sub.add_parser("tinyrce", help="TinyRCE vs backprop on HAR or CWRU (forward-only, label requests)")
    _tinyrce.add_arguments(r)
    r.set_defaults(func=_experiment_tinyrce)

    from .experiments import scenarios as _scenarios

    sc = exp_sub.add_parser("scenarios", help="TyBox vs TinyOL (latest sample only): incremental classes, drift "
                                              "(HAR new subject, CWRU faults arriving), transfer to a new task")
    _scenarios.add_arguments(sc)
    sc.set_defaults(func=lambda a: _scenarios.main(a))

    from .experiments import asking as _asking

    q = exp_sub.add_parser("asking", help="questions per 1,000 samples and accuracy: grouped label requests vs "
                                          "the old policy (HAR new user, MNIST RCE stream)")
    _asking.add_arguments(q)
    q.set_defaults(func=lambda a: _asking.run(a))

    pr = sub.add_parser("pair", help="the label app's pairing QR code and URL again; list / revoke paired phones")
    pr.add_argument("--state-dir", default=None, help="the label_app's state_dir (default $ROS_HOME/tinycl/<ns>)")
    pr.add_argument("--namespace", default="/", help="the graph's namespace (for the default state folder)")
    what = pr.add_mutually_exclusive_group()      # --list --renew renewed without a word
    what.add_argument("--list", action="store_true", help="list the paired phones")
    what.add_argument("--revoke", metavar="ID", help="unpair one phone (its id from --list)")
    what.add_argument("--renew", action="store_true", help="a new pairing secret: unpairs every phone")
    pr.add_argument("--plain", action="store_true", help="QR code without terminal colours (light terminals only)")
    pr.set_defaults(func=_pair)

    ag = sub.add_parser("aggregate", help="federated aggregator of the fleet's heads over MQTT",
                        add_help=False)
    ag.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the aggregator (see --help)")
    ag.set_defaults(func=_aggregate)

    fl = sub.add_parser("fleet", help="set up (setup DIR --host NAME --ip ADDR ...), run (run DIR) or reach (check "
                                      "--broker-dir DIR --identity NAME) the fleet's TLS mosquitto; the fleet's "
                                      "rounds and devices (status STATE_DIR)", add_help=False)
    fl.add_argument("args", nargs=argparse.REMAINDER, help="arguments of tinycl fleet (see --help)")
    fl.set_defaults(func=_fleet)

    df = sub.add_parser("demo-fleet", help="three devices learn different digits; the aggregator merges them",
                        add_help=False)
    df.add_argument("args", nargs=argparse.REMAINDER)
    df.set_defaults(func=_demo_fleet)

    from . import model_tools

    model_tools.add_arguments(sub.add_parser("model", help="bring your own backbone: import (cut), quantize, range, "
                                                            "classes"))

    from .experiments import design as _design

    dz = sub.add_parser("design", help="TyBox-style: cut, pruning, int8 frozen part and replay size for a RAM/flash budget")
    _design.add_arguments(dz)
    dz.set_defaults(func=lambda a: _design.main(a))

    from . import state_report

    state_report.add_arguments(sub.add_parser(
        "state", help="what the nodes have learned: each one's checkpoint and what its journal adds (read only)"))

    b = sub.add_parser("bench", help="per-stage time per sample, in process")
    b.add_argument("--data", default=None)
    b.add_argument("--samples", type=count(1), default=2000)
    b.add_argument("--out", type=output_file, default="results/bench.json")
    b.add_argument("--no-graph", dest="graph", action="store_false", help="skip the multi-process graph bench")
    b.add_argument("--no-fleet", dest="fleet", action="store_false", help="skip the MQTT fleet bench")
    b.add_argument("--no-camera", dest="camera", action="store_false",
                   help="skip the camera bench (decoding, the node at 30 frames/s, the 64x64 JPEG experiment)")
    b.set_defaults(func=_bench)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own_parser = {"aggregate": _aggregate, "fleet": _fleet, "demo-fleet": _demo_fleet}  # their own --help, too
    try:
        if argv[:1] and argv[0] in own_parser:
            return int(own_parser[argv[0]](argparse.Namespace(args=argv[1:])) or 0)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except TinyclError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
