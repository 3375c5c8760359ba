"""Rich tables of experiment results, with the paper's numbers beside ours."""

from __future__ import annotations

from rich.table import Table

ROW_TITLES = {
    "supervised": "Supervised CML (CWR*)",
    "clustering": "Unsupervised CML (clustering)",
    "tinyndc": "TinyNDC (as in the paper)",
    "tinycl": "tinycl (unsupervised)",
    "supervised_slda": "Supervised, SLDA head",
}


def _pm(cell: dict) -> str:
    return f"{cell['mean']:.2f} ± {cell['std']:.2f}"


def _classes(ids: list[int]) -> str:
    """``0–5`` for a run of ids, else ``0,2,7``."""
    if ids and list(ids) == list(range(ids[0], ids[-1] + 1)) and len(ids) > 2:
        return f"{ids[0]}–{ids[-1]}"
    return ",".join(str(i) for i in ids)


def tinyndc_tables(result: dict) -> list[Table]:
    """Table 1 (methods × scores, paper beside ours) and the labelled-samples sweep."""
    p = result["protocol"]
    t = Table(title=f"TinyNDC protocol — {p.get('dataset', 'MNIST')}, {p['labels_per_class']} labels/class, "
                    f"scores on the last {p['score_last']} of {p['stream_length']}, {p['seeds']} seeds (%)")
    old = _classes(p.get("old_classes", []))
    for col in ("method", "accuracy", "paper", "precision", "recall", "F1", "new classes", f"forgetting {old}",
                "labels"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for name, m in result["methods"].items():
        paper = result["paper"].get(name, {}).get("accuracy")
        t.add_row(ROW_TITLES.get(name, name), _pm(m["accuracy"]), f"{paper:.1f}" if paper else "–",
                  _pm(m["precision"]), _pm(m["recall"]), _pm(m["f1"]),
                  f"{m['accuracy_new_classes']['mean']:.2f}", f"{m['forgetting_old']['mean']:+.2f}",
                  f"{m['labels_used']['mean']:.0f}")
    tables = [t]
    if result.get("heads"):
        h = Table(title="Every head on the same stream with true labels (%), and its learned state")
        for col in ("head", "accuracy", "F1", "new classes", f"forgetting {old}", "state bytes", "replay bytes"):
            h.add_column(col, justify="left" if col == "head" else "right")
        for name, m in result["heads"].items():
            h.add_row(name, _pm(m["accuracy"]), _pm(m["f1"]), f"{m['accuracy_new_classes']['mean']:.2f}",
                      f"{m['forgetting_old']['mean']:+.2f}", f"{m['state_bytes']['mean']:.0f}",
                      f"{m['replay_bytes']['mean']:.0f}" if "replay_bytes" in m else "–")
        tables.append(h)
    if result.get("qlr"):
        q = result["qlr"]
        tables[-1].caption = (f"Quantized latent replay: replay memory {q['features_ratio']:.2f}× smaller "
                              f"({q['with_labels_ratio']:.2f}× with labels), accuracy {q['accuracy_int8']:.2f}% "
                              f"vs {q['accuracy_fp32']:.2f}% in fp32 (loss {q['accuracy_loss']:+.2f} points)")
    if result.get("sweep"):
        s = Table(title="Labelled samples per class → accuracy (%)")
        for col in ("labels/class", "TinyNDC (ours)", "TinyNDC (paper)", "tinycl"):
            s.add_column(col, justify="right")
        for k, row in result["sweep"].items():
            paper = result["paper"]["sweep"].get(int(k), result["paper"]["sweep"].get(str(k)))
            s.add_row(k, _pm(row["tinyndc"]), f"{paper:.1f}" if paper else "–", _pm(row["tinycl"]))
        tables.append(s)
    return tables


# --- TinyRCE -----------------------------------------------------------------------------------
RCE_TITLES = {"rce": "TinyRCE (all labels)", "rce_active": "TinyRCE (asked labels only)",
              "backprop": "Backprop softmax head", "backprop_cnn": "Backprop, whole CNN (estimate)"}


def _kib(n: float) -> str:
    return f"{n / 1024:.1f}"


def _macs(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def tinyrce_tables(result: dict) -> list[Table]:
    """Methods (ours beside the paper's), targets met or missed, and the HAR new-user scenario."""
    m, paper = result["methods"], result["paper"]
    har = result["dataset"] == "har"
    scope = f"mean over {len(result['users'])} users, device {result['device']}" if har else "one machine"
    t = Table(title=f"TinyRCE vs backprop — {result['dataset'].upper()} ({scope}), features {result['model']}")
    for col in ("method", "accuracy %", "single user %", "learning MACs", "learned state KiB",
                "training RAM KiB", "labels asked / used"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for name in ("rce", "rce_active", "backprop"):
        r = m[name]
        t.add_row(RCE_TITLES[name], f"{r['accuracy']:.2f}", f"{r['accuracy_single_user']:.2f}",
                  _macs(r["learning_macs"]), _kib(r["state_bytes"]), _kib(r["training_ram_bytes"]),
                  f"{r['labels_requested']:.0f} / {r['labels_used']:.0f}")
    if "cnn_e2e" in m:
        r = m["cnn_e2e"]
        t.add_row(f"end-to-end CNN, PyTorch, {r['epochs']:.0f} epochs (measured)", f"{r['accuracy']:.2f}",
                  f"{r['accuracy_single_user']:.2f}", _macs(r["learning_macs"]), _kib(4 * r["params"]),
                  _kib(r["training_ram_bytes"]), f"– / {r['labels_used']:.0f}")
    if "backprop_cnn" in m:
        t.add_row(RCE_TITLES["backprop_cnn"], "–", "–", _macs(m["backprop_cnn"]["learning_macs"]), "–", "–", "–")
    t.add_row("paper: TinyRCE / CNN backprop", f"gap {paper['accuracy_gap_single_user'][1]:+.2f} to "
              f"{paper['accuracy_gap_single_user'][0]:+.2f}", "",
              f"{_macs(paper['learning_macs_rce'])} / {_macs(paper['learning_macs_backprop'])}",
              f"{paper['ram_kib_rce']} / {paper['ram_kib_backprop']} (RAM)", "", "")
    tables = [t]
    g = Table(title="Targets (issue 4) — ours beside the paper's")
    for col in ("target", "ours", "needed", "paper", "met"):
        g.add_column(col, justify="left" if col == "target" else "right")
    paper_of = {"accuracy_gap": f"{paper['accuracy_gap_avg_users'][1]:+.2f} … {paper['accuracy_gap_avg_users'][0]:+.2f}",
                "accuracy_gap_single_user": f"{paper['accuracy_gap_single_user'][1]:+.2f} … "
                                            f"{paper['accuracy_gap_single_user'][0]:+.2f}",
                "learning_ratio_vs_head": "–", "learning_ratio_vs_cnn": f"{paper['learning_ratio']}×",
                "state_bytes": f"{paper['ram_kib_rce']} KiB RAM", "new_user_gain": "–"}
    for key, tg in result["targets"].items():
        val = tg["value"]
        ours = (f"{val:.2f}×" if "ratio" in key else f"{_kib(val)} KiB" if key == "state_bytes" else f"{val:+.2f}")
        need = (f"≥ {tg['target']:.0f}×" if "ratio" in key else f"≤ {_kib(tg['target'])} KiB"
                if key == "state_bytes" else f"≥ {tg['target']:+.2f}" if "gap" in key else "> 0")
        g.add_row(tg["what"], ours, need, paper_of.get(key, "–"),
                  "[green]yes[/green]" if tg["met"] else "[red]MISSED[/red]")
    tables.append(g)
    ch = result.get("cheaper")
    if ch:
        cfg = result["config"]
        c = Table(title=f"Cheaper TinyRCE distances (int8 range ±{cfg['int8_range']}, visit cap {cfg['max_visit']}) — "
                        "learning ratios: baseline MACs / RCE MACs")
        cols = ["variant", "accuracy %", "learning MACs", "early exit", "inference MACs", "state KiB", "prototypes",
                "× vs head", "× vs head (early exit)"]
        cnn = "ratio_vs_cnn" in next(iter(ch.values()))
        if cnn:
            cols += ["gap vs CNN", "× vs CNN", "× vs CNN (early exit)", "× vs CNN (+ forward)"]
        for col in cols:
            c.add_column(col, justify="left" if col == "variant" else "right")
        for name, r in ch.items():
            row = [name, f"{r['accuracy']:.2f}", _macs(r["learning_macs"]), _macs(r["learning_macs_early_exit"]),
                   f"{r['inference_macs']:,.0f}", _kib(r["state_bytes"]), f"{r['prototypes']:.0f}",
                   f"{r['ratio_vs_head']:.2f}", f"{r['ratio_vs_head_early_exit']:.2f}"]
            if cnn:
                row += [f"{r['gap_vs_cnn']:+.2f}", f"{r['ratio_vs_cnn']:.0f}", f"{r['ratio_vs_cnn_early_exit']:.0f}",
                        f"{r['ratio_vs_cnn_with_forward']:.1f}"]
            c.add_row(*row)
        tables.append(c)
    nu = result.get("new_user")
    if nu:
        n = Table(title=f"New user: TinyRCE learned on subjects {nu['base_subjects'][0]}–{nu['base_subjects'][-1]} "
                        f"asks for labels (budget {nu['label_budget']}) — accuracy on held-out executions (%)")
        for col in ("user", "before", "after", "labels asked", "stream", "backprop (base)", "backprop + same labels"):
            n.add_column(col, justify="left" if col == "user" else "right")
        for name, u in {**nu["users"], "mean": nu["mean"]}.items():
            n.add_row(name, f"{u['accuracy_before']:.2f}", f"{u['accuracy_after']:.2f}", f"{u['labels_asked']:.0f}",
                      f"{u['stream_length']:.0f}", f"{u['backprop_base']:.2f}", f"{u['backprop_same_labels']:.2f}")
        tables.append(n)
    return tables
