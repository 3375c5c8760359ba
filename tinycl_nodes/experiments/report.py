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


def tinyndc_tables(result: dict) -> list[Table]:
    """Table 1 (methods × scores, paper beside ours) and the labelled-samples sweep."""
    p = result["protocol"]
    t = Table(title=f"TinyNDC protocol — MNIST, {p['labels_per_class']} labels/class, "
                    f"scores on the last {p['score_last']} of {p['stream_length']}, {p['seeds']} seeds (%)")
    for col in ("method", "accuracy", "paper", "precision", "recall", "F1", "new digits", "forgetting 0–5", "labels"):
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
        for col in ("head", "accuracy", "F1", "new digits", "forgetting 0–5", "state bytes", "replay bytes"):
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
