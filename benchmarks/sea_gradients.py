"""SEA: the gradient of each loss term on the parameters the terms share, against BPR's.

SEA's loss (eq. 19) is :math:`\\mathcal{L}_{BPR} + \\alpha \\mathcal{L}_{align} + \\beta
\\mathcal{L}_{dist}`. The alignment and distancing terms reach the ranking model only through
the item encoders' first map, ``item_proj`` (the separated representations
:math:`\\mathbf{s}^m = \\mathbf{W}_m \\mathbf{f}^m + \\mathbf{b}_m`, split into a generic and a
unique half): that is the only part of the model all three terms update (BPR alone updates the
user embeddings and the item MLPs, the auxiliary terms alone their projection heads and
maps). If the auxiliary gradients on ``item_proj`` are tiny against BPR's, the auxiliary
terms cannot change what the ranking model learns, whatever their own values do.

This script trains SEA with the library's loop (:func:`pyg_multirec.experiment.
train_with_args`; model built by ``examples/sea.py``'s ``build`` from its ``train`` flags) for
a few epochs and, at ``--samples`` evenly spaced training steps of every epoch, takes
:func:`torch.autograd.grad` of each term of the step's own loss dictionary separately (BPR,
:math:`\\alpha \\mathcal{L}_{align}`, :math:`\\beta \\mathcal{L}_{dist}`, with the graph
retained) with respect to ``item_proj``'s parameters; the trainer then back-propagates and
steps on the total loss as usual, so the measurement leaves the training path unchanged. It
prints, per epoch, the mean over the sampled steps of the norm of BPR's gradient, of the
ratio of each auxiliary gradient's norm to BPR's, and of the cosine between each auxiliary
gradient and BPR's; then the same ratios per modality and per half (the ``item_proj`` rows
that produce the generic half, and those of the unique half) over all sampled steps.

Every flag that is not this script's own is passed to ``examples/sea.py train`` (e.g.
``--dataset ml100k``, ``--alpha``, ``--beta``, ``--tau``, ``--variant``, ``--seed``).

Usage::

    python benchmarks/sea_gradients.py                          # synthetic, SEA-a defaults
    python benchmarks/sea_gradients.py --alpha 0.05 --beta 0.02 --tau 0.1
    python benchmarks/sea_gradients.py --dataset ml100k --data-root ../shared/data --epochs 3
    python benchmarks/sea_gradients.py --quick                  # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any, Optional

import torch
from _common import (
    load_example,
    markdown_table,
    payload_header,
    resolve_device,
    write_json,
)

SCRIPT = "sea_gradients"
DEFAULT_EPOCHS = 5
DEFAULT_SAMPLES = 4  # measured steps per epoch
DEFAULT_THREADS = 1
QUICK_EPOCHS = 2
QUICK_SAMPLES = 2
QUICK_DATA = ["--synthetic-users", "120", "--synthetic-items", "80",
              "--synthetic-interactions", "2000"]  # fmt: skip
#: The auxiliary terms of SEA's loss dictionary and the weight that multiplies each.
AUX_TERMS = {"align": "alpha", "distance": "beta"}
TERMS = ("bpr", *AUX_TERMS)
EPS = 1e-30  # guards the ratio and cosine against an exactly zero BPR gradient


def sea_args(forwarded: list[str]) -> tuple[Any, argparse.Namespace]:
    """``examples/sea.py`` as a module and the Namespace of its ``train`` sub-command."""
    from pyg_multirec.experiment import build_parser

    sea = load_example("sea")
    parser = build_parser("sea", sea.add_arguments, getattr(sea, "DEFAULTS", None))
    return sea, parser.parse_args(["train", *forwarded, "--quiet"])


class GradientProbe:
    """Wraps ``model.loss`` (an instance attribute; the class is untouched): at the chosen
    steps of each epoch, records the gradient of every term on ``item_proj`` and returns the
    terms unchanged for the trainer to back-propagate."""

    def __init__(self, model: torch.nn.Module, num_batches: int, samples: int) -> None:
        self.model = model
        self.loss = model.loss
        self.on_epoch_start = model.on_epoch_start
        self.params = [list(proj.parameters()) for proj in model.item_proj]
        self.generic_rows = [proj.out_features // 2 for proj in model.item_proj]
        samples = max(1, min(samples, num_batches))
        self.measured = {round(k * num_batches / samples) for k in range(samples)}
        self.epoch, self.step = 0, 0
        self.records: list[dict[str, Any]] = []
        model.loss = self.probed_loss
        model.on_epoch_start = self.probed_epoch_start

    def probed_epoch_start(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        self.on_epoch_start(epoch)

    def probed_loss(self, users, pos_items, neg_items) -> dict[str, torch.Tensor]:
        terms = self.loss(users, pos_items, neg_items)
        if self.model.training and self.step in self.measured and torch.is_grad_enabled():
            self.records.append(self.measure(terms))
        self.step += 1
        return terms

    def measure(self, terms: dict[str, torch.Tensor]) -> dict[str, Any]:
        grads = term_gradients(self.model, terms, [p for ps in self.params for p in ps])
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "parts": {}}
        for part, select in self._parts().items():
            vectors = {name: torch.cat([select(i, g) for i, g in enumerate(gs)])
                       for name, gs in grads.items()}  # fmt: skip
            record["parts"][part] = _compare(vectors)
        return record

    def _parts(self) -> dict[str, Any]:
        """Flattened views of the gradients of ``item_proj``: all of it, per modality, per
        half (generic / unique rows of every modality's weight and bias)."""
        owner = [m for m, params in enumerate(self.params) for _ in params]
        parts = {"all": lambda i, g: g.flatten()}
        for m, name in enumerate(self.model.modalities):
            parts[name] = lambda i, g, m=m: g.flatten() if owner[i] == m else g.new_zeros(0)
        for half in ("generic", "unique"):
            def rows(i, g, half=half):
                cut = self.generic_rows[owner[i]]
                return (g[:cut] if half == "generic" else g[cut:]).flatten()
            parts[half] = rows
        return parts


def term_gradients(
    model: torch.nn.Module, terms: dict[str, torch.Tensor], params: list[torch.Tensor]
) -> dict[str, list[torch.Tensor]]:
    """The gradient on ``params`` of each term of SEA's loss as it enters the total (BPR,
    ``alpha * align``, ``beta * distance``), one :func:`torch.autograd.grad` per term with the
    graph retained; zeros where a term does not reach a parameter. Their sum is the gradient
    of ``terms['loss']``."""
    separate = model.separate
    weighted = {"bpr": terms["bpr"]}
    for name, weight in AUX_TERMS.items():
        if name in terms:
            weighted[name] = getattr(separate, weight) * terms[name]
    grads = {}
    for name, value in weighted.items():
        g = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        grads[name] = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params)]
    return grads


def _compare(vectors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Norm of BPR's gradient, and each auxiliary gradient's norm ratio and cosine to it."""
    bpr = vectors["bpr"]
    bpr_norm = float(bpr.norm())
    out = {"bpr_norm": bpr_norm}
    for name in AUX_TERMS:
        if name in vectors:
            norm = float(vectors[name].norm())
            out[f"{name}_norm"] = norm
            out[f"{name}_ratio"] = norm / max(bpr_norm, EPS)
            out[f"{name}_cos"] = float(vectors[name] @ bpr) / max(norm * bpr_norm, EPS)
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def summarise(records: list[dict[str, Any]], part: str) -> dict[str, float]:
    keys = records[0]["parts"][part].keys() if records else ()
    return {k: _mean([r["parts"][part][k] for r in records]) for k in keys}


def tables(records: list[dict[str, Any]], history: list[dict[str, float]],
           terms: list[str], every: int = 1) -> str:  # fmt: skip
    """Per-epoch table (all of ``item_proj``; the first, last and every ``every``-th epoch)
    and per-part table (all sampled steps)."""
    valid = {row["epoch"]: row.get("valid_recall@20", math.nan) for row in history}
    aux = [t for t in AUX_TERMS if t in terms]
    headers = ["epoch", "valid R@20", "steps", "norm g_bpr"]
    headers += [f"norm g_{t} / norm g_bpr" for t in aux] + [f"cos(g_{t}, g_bpr)" for t in aux]
    rows = []
    epochs = sorted({r["epoch"] for r in records})
    for epoch in epochs:
        if epoch % every and epoch not in (epochs[0], epochs[-1]):
            continue
        chosen = [r for r in records if r["epoch"] == epoch]
        s = summarise(chosen, "all")
        rows.append([epoch, valid.get(epoch, math.nan), len(chosen), s["bpr_norm"],
                     *[s[f"{t}_ratio"] for t in aux], *[s[f"{t}_cos"] for t in aux]])
    parts = list(records[0]["parts"]) if records else []
    part_rows = []
    for part in parts:
        s = summarise(records, part)
        part_rows.append([part, s["bpr_norm"], *[s[f"{t}_ratio"] for t in aux],
                          *[s[f"{t}_cos"] for t in aux]])
    part_headers = ["item_proj part", "norm g_bpr"] + headers[4:]
    return (markdown_table(headers, rows) + "\n\nOver all sampled steps, by part:\n\n"
            + markdown_table(part_headers, part_rows))


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    from pyg_multirec.experiment import load_data, train_with_args
    from pyg_multirec.sampling import BPRSampler
    from pyg_multirec.train import seed_everything

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other flags go to 'examples/sea.py train' (e.g. --dataset, --alpha, --seed).",
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help="measured training steps per epoch (evenly spaced)")
    parser.add_argument("--print-every", type=int, default=1,
                        help="table rows: the first, the last and every N-th epoch")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long smoke run on a tiny synthetic data set")
    parser.add_argument("--out", type=Path, default=None, help="also write the records as JSON")
    args, forwarded = parser.parse_known_args(argv)
    if args.quick:
        args.epochs, args.samples = QUICK_EPOCHS, QUICK_SAMPLES
        forwarded = [*QUICK_DATA, *forwarded]
    for flag in ("epochs", "samples", "print_every", "threads"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1 "
                             f"(got {getattr(args, flag)})")
    torch.set_num_threads(args.threads)
    sea, config = sea_args(forwarded + ["--epochs", str(args.epochs)])
    device = resolve_device(config.device)

    seed_everything(config.seed)
    data = load_data(config)
    model = sea.build(data, config)
    num_edges = data["user", "train", "item"].edge_index.size(1)
    num_batches = len(BPRSampler(data["user", "train", "item"].edge_index,
                                 data["user"].num_nodes, data["item"].num_nodes,
                                 config.batch_size))  # fmt: skip
    probe = GradientProbe(model, num_batches, args.samples)
    result = train_with_args(model, data, config, progress=False, evaluate_test=False)
    if not probe.records:
        raise RuntimeError("no training step was measured")
    terms = ["bpr", *[t for t in AUX_TERMS if f"{t}_ratio" in probe.records[0]["parts"]["all"]]]
    weights = {"alpha": model.separate.alpha, "beta": model.separate.beta,
               "tau": config.tau, "align": model.separate.align,
               "distance": model.separate.distance}  # fmt: skip
    print(f"SEA on {config.dataset} ({num_edges:,} training pairs, {num_batches} batches per "
          f"epoch), {args.epochs} epochs, {args.samples} sampled steps per epoch; "
          + ", ".join(f"{k} {v}" for k, v in weights.items()))
    print("Gradients on item_proj (the only parameters BPR and the auxiliary terms share); "
          "auxiliary terms weighted (alpha * align, beta * distance); mean over sampled steps:\n")
    print(tables(probe.records, result.history, terms, args.print_every))
    payload = {
        **payload_header(SCRIPT, device, args.quick),
        "dataset": config.dataset,
        "sea_flags": forwarded,
        "weights": weights,
        "epochs": args.epochs,
        "samples_per_epoch": args.samples,
        "history": [{k: row[k] for k in ("epoch", "valid_recall@20") if k in row}
                    for row in result.history],
        "results": probe.records,
        "summary": {part: summarise(probe.records, part)
                    for part in (probe.records[0]["parts"] if probe.records else {})},
    }
    if args.out is not None:
        write_json(args.out, payload)
        print(f"\nwrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
