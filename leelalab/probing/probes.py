"""Probes that read future-move squares out of cached activations.

Probes (all predict one of the 64 squares, softmax over squares, cross-entropy):

- :class:`BilinearProbe` — the look-ahead paper's: logit for square ``s`` is
  ``⟨W_x x_s, W_z z⟩ / √k + c`` where ``x_s`` is the activation at square ``s``, ``z`` the
  activation at a *query* square (the paper: the 1st move's target), ``k`` the rank (32),
  ``W`` initialised N(0, 1/d), ``c`` a scalar bias;
- :class:`LinearProbe` — ``logit_s = w · x_s + b_s``, one weight vector shared by the squares;
- ``"logistic"`` — a multinomial logistic regression (scikit-learn) from the activation at
  the query square (or the mean over squares without a query) to the 64 squares.

Targets: ``move{k}_target`` / ``move{k}_source`` for ``k = 1 … 7`` (odd k: the solver's
moves, even k: the opponent's), in the network's frame. A puzzle whose line has no k-th
move is *masked*, never guessed. ``query="move1_target"`` is the paper's setting for
``move3_target``.

Evaluation: for each seed, a fresh shuffled split *by puzzle* (test fraction 0.3), a fresh
initialisation and minibatch order; accuracy on the test puzzles; mean ± std over seeds.
The *control task* permutes the labels among puzzles of the same type
(:func:`leelalab.probing.store.puzzle_type`), keeping each type's label distribution
but breaking the link to the board: selectivity = accuracy − control accuracy. The
random-init baseline is the same probe on a store cached with ``random_init``.

Training streams minibatches from disk (:meth:`ActivationStore.iter_minibatches`), so
memory does not grow with the dataset. The saved probes record the puzzles they trained on
(``split.json``), and :func:`evaluate_saved_probes` leaves those out.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leelalab.probing.settings import _TARGET, ProbeConfig, ProbeError, ProbeSettings
from leelalab.probing.settings import PROBE_KINDS as PROBE_KINDS
from leelalab.probing.store import ActivationStore, ActivationStoreError, match_hooks
from leelalab.probing.training import constant, fit_probe, map_rows
from leelalab.runs.experiment import Results, SettingsError
from leelalab.runs.records import format_name, read_json, read_safetensors
from leelalab.runs.results import RunDirectory, sha256_file, write_text_atomically
from leelalab.stats import Estimate, proportion_ci

MINIMUM_TEST_PUZZLES = 30
"""Below this many test puzzles an accuracy is reported as "too few": a 95% interval on
fewer is wider than ±0.17, too wide to compare layers."""


def store_hooks(store: ActivationStore, patterns: Sequence[str] | None) -> list[str]:
    """The store's hooks matching ``patterns`` (names or globs such as
    ``blocks.*.hook_resid_post``, as ``activations cache --hooks`` takes), in store order;
    every hook when ``patterns`` is empty."""
    if not patterns:
        return list(store.hooks)
    # The matching of `activations cache --hooks`, over the hooks this store holds.
    try:
        return match_hooks(list(store.hooks), patterns, f"the store holds {len(store.hooks)}")
    except ActivationStoreError:
        raise ProbeError(
            f"{store.path}: no activations for some of {', '.join(patterns)} (the store "
            f"holds {', '.join(store.hooks)})"
        ) from None


def target_labels(store: ActivationStore, target: str) -> np.ndarray:
    """``[N]`` square labels (network frame) of ``target``; −1 where the move is absent."""
    match = _TARGET.match(target)
    if match is None:
        raise ProbeError(
            f"unknown target {target!r}; use move<k>_target or move<k>_source with k = 1..7"
        )
    k, which = int(match.group(1)), match.group(2)
    return store.move_squares[:, k - 1, 1 if which == "target" else 0].copy()


def grouped_split(
    puzzle_ids: Sequence[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/test row indices with every puzzle id entirely on one side."""
    ids = np.asarray(puzzle_ids, dtype=object)
    unique = np.array(sorted(set(ids.tolist())), dtype=object)
    rng = np.random.default_rng(seed)
    shuffled = unique[rng.permutation(len(unique))]
    n_test = max(1, int(round(test_fraction * len(unique))))
    test_ids = set(shuffled[:n_test].tolist())
    is_test = np.array([i in test_ids for i in ids])
    return np.nonzero(~is_test)[0], np.nonzero(is_test)[0]


def control_labels(labels: np.ndarray, types: np.ndarray, seed: int) -> np.ndarray:
    """``labels`` permuted among the rows of each type (masked rows stay masked)."""
    rng = np.random.default_rng(seed)
    out = labels.copy()
    for kind in np.unique(types):
        rows = np.nonzero((types == kind) & (labels >= 0))[0]
        out[rows] = labels[rows[rng.permutation(rows.size)]]
    return out


class BilinearProbe(nn.Module):
    """The paper's rank-k bilinear square probe."""

    def __init__(self, d_model: int, rank: int = 32) -> None:
        super().__init__()
        self.rank = rank
        self.w_x = nn.Parameter(torch.randn(rank, d_model) / math.sqrt(d_model))
        self.w_z = nn.Parameter(torch.randn(rank, d_model) / math.sqrt(d_model))
        self.bias = nn.Parameter(torch.randn(()))

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        z = x[torch.arange(x.shape[0]), query]  # (batch, d)
        keys = x @ self.w_x.T  # (batch, 64, k)
        return torch.einsum("bsk,bk->bs", keys, z @ self.w_z.T) / math.sqrt(self.rank) + self.bias


class LinearProbe(nn.Module):
    """``logit_s = w · x_s + b_s``."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_model) / math.sqrt(d_model))
        self.square_bias = nn.Parameter(torch.zeros(64))

    def forward(self, x: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        return x @ self.weight + self.square_bias


def _make_probe(config: ProbeConfig, d_model: int) -> nn.Module:
    if config.probe == "bilinear":
        return BilinearProbe(d_model, config.rank)
    return LinearProbe(d_model)


def _usable_rows(rows: np.ndarray, labels: np.ndarray, queries: np.ndarray | None) -> np.ndarray:
    keep = labels[rows] >= 0
    if queries is not None:
        keep &= queries[rows] >= 0
    return rows[keep]


def train_probe(
    store: ActivationStore,
    hook: str,
    labels: np.ndarray,
    queries: np.ndarray | None,
    train_rows: np.ndarray,
    config: ProbeSettings,
    seed: int,
    *,
    bar: Any = None,
) -> nn.Module:
    """Train a torch probe on ``train_rows`` streaming from the store (seeded).

    ``bar`` (a tqdm bar) advances by every minibatch's puzzles."""

    def loss(probe: nn.Module, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        q = torch.from_numpy(queries[rows]) if queries is not None else None
        return nn.functional.cross_entropy(probe(x, q), torch.from_numpy(labels[rows]))

    return fit_probe(
        lambda: _make_probe(config, store.widths[hook]),
        loss,
        store,
        hook,
        _usable_rows(train_rows, labels, queries),
        config.schedule,
        seed,
        bar,
    )


@dataclass(frozen=True)
class Score:
    """A probe's test predictions summarised: right, scored, and whether it predicted one
    square for every puzzle (a degenerate fit)."""

    correct: int
    total: int
    constant: bool

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


def score_probe(
    probe: nn.Module,
    store: ActivationStore,
    hook: str,
    labels: np.ndarray,
    queries: np.ndarray | None,
    rows: np.ndarray,
    bar: Any = None,
) -> Score:
    """How ``probe`` does on ``rows`` (masked rows excluded): right, scored, constant."""
    rows = _usable_rows(rows, labels, queries)
    if rows.size == 0:
        raise ProbeError("no test puzzle has the target (and query) move")

    def predict(x: torch.Tensor, batch_rows: np.ndarray) -> torch.Tensor:
        q = torch.from_numpy(queries[batch_rows]) if queries is not None else None
        return probe(x, q).argmax(dim=1)

    predicted, order = map_rows(predict, store, hook, rows, bar=bar)
    return Score(int((predicted == labels[order]).sum()), int(rows.size), constant(predicted))


def _logistic_features(
    store: ActivationStore, hook: str, rows: np.ndarray, queries: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``rows`` and the rows in the order of the features (file order)."""

    def feature(x: torch.Tensor, batch_rows: np.ndarray) -> torch.Tensor:
        if queries is not None:
            return x[torch.arange(x.shape[0]), torch.from_numpy(queries[batch_rows])]
        return x.mean(dim=1)

    return map_rows(feature, store, hook, rows)


def _logistic_accuracy(
    store: ActivationStore,
    hook: str,
    labels: np.ndarray,
    queries: np.ndarray | None,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    seed: int,
    bar: Any = None,
) -> Score:
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ProbeError(
            'the logistic probe needs the probe extra: pip install "leelalab[probe]"'
        ) from None
    train_rows = _usable_rows(train_rows, labels, queries)
    test_rows = _usable_rows(test_rows, labels, queries)
    model = LogisticRegression(max_iter=300, random_state=seed)
    features, rows = _logistic_features(store, hook, train_rows, queries)
    model.fit(features, labels[rows])
    features, rows = _logistic_features(store, hook, test_rows, queries)
    if bar is not None:
        bar.update(train_rows.size + test_rows.size)
    predicted = model.predict(features)
    return Score(int((predicted == labels[rows]).sum()), int(rows.size), constant(predicted))


@dataclass
class LayerResult:
    hook: str
    accuracy: list[float]
    control_accuracy: list[float]
    train_puzzles: int
    test_puzzles: int
    constant_seeds: list[int] = field(default_factory=list)
    """Seeds whose probe predicted one square for every test puzzle (degenerate fits)."""

    def summary(self) -> dict[str, Any]:
        acc, ctl = np.array(self.accuracy), np.array(self.control_accuracy)
        return {
            "hook": self.hook,
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
            "control_mean": float(ctl.mean()) if ctl.size else None,
            "control_std": float(ctl.std(ddof=1)) if ctl.size > 1 else (0.0 if ctl.size else None),
            "selectivity": float(acc.mean() - ctl.mean()) if ctl.size else None,
            "accuracy": self.accuracy,
            "control_accuracy": self.control_accuracy,
            "train_puzzles": self.train_puzzles,
            "test_puzzles": self.test_puzzles,
            "constant_prediction_seeds": self.constant_seeds,
        }


@dataclass
class ProbeResults(Results):
    """``results.json`` of ``probe train``: per hook, accuracies per seed, mean ± std,
    control, selectivity, the train/test puzzle counts and the degenerate seeds."""

    FORMAT = format_name("probe-training")
    HINT = "make it with `leelalab probe train`"

    store: str
    network: str | None
    random_init: int | None
    config: dict[str, Any]
    layers: list[int | None]
    results: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProbeResults:
        """Results of a probe directory; a ``results.json`` written before results had a
        format loads too (as this one), one of another format does not."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        data = read_json(path, hint=cls.HINT, what="results file")
        if "format" in data:
            read_json(path, expect_format=cls.FORMAT, hint=cls.HINT, what="results file")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise SettingsError(f"{path}: malformed {cls.FORMAT} results ({error})") from None

    def by_hook(self) -> dict[str, dict[str, Any]]:
        return {str(result["hook"]): result for result in self.results}


def describe_accuracy(result: Mapping[str, Any], minimum: int = MINIMUM_TEST_PUZZLES) -> str:
    """A hook's accuracy for a table: mean ± std over seeds, "too few" below ``minimum``
    test puzzles, and marked when a seed's probe predicted a constant."""
    tested = int(result["test_puzzles"])
    if tested < minimum:
        return f"too few (n={tested}; at least {minimum} needed)"
    text = f"{result['accuracy_mean']:.3f} ± {result['accuracy_std']:.3f}"
    degenerate = result.get("constant_prediction_seeds") or []
    if degenerate:
        text += f" (constant prediction: seed {', '.join(str(s) for s in degenerate)})"
    return text


def _layer_of(hook: str) -> int | None:
    match = re.search(r"blocks\.(\d+)\.", hook)
    return int(match.group(1)) if match else None


SPLIT_FILE = "split.json"
"""The ids of the puzzles the saved probes trained on (the first seed's split)."""


def _probe_work(
    store: ActivationStore,
    hooks: list[str],
    labels: np.ndarray,
    queries: np.ndarray | None,
    config: ProbeConfig,
) -> int:
    """Puzzles the progress bar counts: each epoch's training rows and the test rows, of
    every probe (hook × seed, control included)."""
    total = 0
    for seed in config.seeds:
        train_rows, test_rows = grouped_split(store.puzzle_ids, config.test_fraction, seed)
        train = _usable_rows(train_rows, labels, queries).size
        test = _usable_rows(test_rows, labels, queries).size
        per_probe = train + test if config.probe == "logistic" else config.epochs * train + test
        total += per_probe * (2 if config.control else 1)
    return total * len(hooks)


@dataclass
class _ProbeInputs:
    """What every probe of a run reads: the store, its hooks, the labels and queries."""

    store: ActivationStore
    hooks: list[str]
    labels: np.ndarray
    queries: np.ndarray | None


def _probe_inputs(
    store_path: str | os.PathLike[str], config: ProbeSettings, hooks: Sequence[str] | None
) -> _ProbeInputs:
    store = ActivationStore(store_path)
    chosen = store_hooks(store, hooks)
    for hook in chosen:
        store._check(hook)
    labels = target_labels(store, config.target)
    queries = target_labels(store, config.query) if config.query else None
    if config.probe == "linear":
        queries = None
    return _ProbeInputs(store, chosen, labels, queries)


def _train_hook(
    inputs: _ProbeInputs, hook: str, config: ProbeSettings, output: Path, bar: Any
) -> LayerResult:
    """Every seed's probe (and control probe) at ``hook``; saves the first seed's probe."""
    from safetensors.torch import save_file

    store, labels, queries = inputs.store, inputs.labels, inputs.queries
    accuracy, control, degenerate = [], [], []
    for seed in config.seeds:
        bar.set_description(f"{config.probe} probe {hook} seed {seed}")
        train_rows, test_rows = grouped_split(store.puzzle_ids, config.test_fraction, seed)
        shuffled = control_labels(labels, store.puzzle_type, seed) if config.control else None
        if config.probe == "logistic":
            score = _logistic_accuracy(
                store, hook, labels, queries, train_rows, test_rows, seed, bar
            )
            if shuffled is not None:
                control.append(
                    _logistic_accuracy(
                        store, hook, shuffled, queries, train_rows, test_rows, seed, bar
                    ).accuracy
                )
        else:
            probe = train_probe(store, hook, labels, queries, train_rows, config, seed, bar=bar)
            score = score_probe(probe, store, hook, labels, queries, test_rows, bar)
            if seed == config.seeds[0]:
                _save_probe(save_file, probe, output, hook, config, seed)
                _save_split(output, store, train_rows, config, seed)
            if shuffled is not None:
                control_probe = train_probe(
                    store, hook, shuffled, queries, train_rows, config, seed, bar=bar
                )
                control.append(
                    score_probe(
                        control_probe, store, hook, shuffled, queries, test_rows, bar
                    ).accuracy
                )
        accuracy.append(score.accuracy)
        if score.constant:
            degenerate.append(seed)
    return LayerResult(
        hook,
        accuracy,
        control,
        int(_usable_rows(train_rows, labels, queries).size),
        int(_usable_rows(test_rows, labels, queries).size),
        degenerate,
    )


def train_probes(
    store_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: ProbeSettings,
    *,
    hooks: Sequence[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> ProbeResults:
    """Train and evaluate a probe per hook × seed (plus the control task); save results.

    ``hooks``: names or globs (``blocks.*.hook_resid_post``) of the store's hooks; all
    when None. Writes into ``output/``: ``results.json`` (:class:`ProbeResults`),
    ``config.json``, ``settings.json``, and for torch probes the first seed's weights per
    hook as ``<hook>.safetensors`` with ``split.json``, the ids of the puzzles they trained
    on (:func:`evaluate_saved_probes` leaves those out); ``run.json`` records the store,
    versions and timing.

    The store, hooks and settings are checked before ``output`` is created. A complete
    ``output`` with the same settings (store contents by hash) is returned as it is; other
    settings are refused unless ``overwrite``; a run that fails before saving a probe
    leaves nothing behind, and a rerun redoes an incomplete one. The progress bar counts
    puzzles through every epoch of every probe.
    """
    inputs = _probe_inputs(store_path, config, hooks)
    store = inputs.store
    output = Path(output)
    settings = {
        "store": str(Path(store_path).resolve()),
        "store_sha256": sha256_file(store_path),
        "store_settings": store.settings,
        "config": asdict(config),
        "hooks": inputs.hooks,
    }
    run_directory = RunDirectory(output, settings, overwrite=overwrite, what="probe run")
    if run_directory.complete(ProbeResults.FILE):
        return ProbeResults.load(output)
    bar = tqdm(
        total=_probe_work(store, inputs.hooks, inputs.labels, inputs.queries, config),
        desc=f"{config.probe} probes",
        unit="puzzle",
        unit_scale=True,
        disable=not progress,
    )
    with run_directory:
        layers = [_train_hook(inputs, hook, config, output, bar) for hook in inputs.hooks]
        bar.close()
        results = ProbeResults(
            store=str(Path(store_path).resolve()),
            network=store.settings.get("network"),
            random_init=store.settings.get("random_init"),
            config=config.to_json(),
            layers=[_layer_of(r.hook) for r in layers],
            results=[r.summary() for r in layers],
        )
        results.save(output)
        write_text_atomically(output / "config.json", json.dumps(config.to_json(), indent=2))
        run_directory.write_record()  # the store and its sha256 are among the settings
    return results


def _save_probe(
    save_file: Any, probe: nn.Module, output: Path, hook: str, config: ProbeConfig, seed: int
) -> None:
    tensors = {k: v.detach().contiguous() for k, v in probe.state_dict().items()}
    temporary = output / f"{hook}.safetensors.tmp"
    save_file(
        tensors,
        str(temporary),
        metadata={
            "probe": config.probe,
            "target": config.target,
            "query": str(config.query),
            "hook": hook,
            "seed": str(seed),
        },
    )
    temporary.replace(output / f"{hook}.safetensors")


def _save_split(
    output: Path, store: ActivationStore, train_rows: np.ndarray, config: ProbeConfig, seed: int
) -> None:
    train_ids = sorted({str(i) for i in store.puzzle_ids[train_rows]})
    record = {
        "seed": seed,
        "test_fraction": config.test_fraction,
        "train_puzzles": len(train_ids),
        "train_puzzle_ids": train_ids,
    }
    write_text_atomically(output / SPLIT_FILE, json.dumps(record, indent=1))


def load_probe(directory: str | os.PathLike[str], hook: str) -> tuple[nn.Module, ProbeConfig]:
    """A saved torch probe and its config."""
    directory = Path(directory)
    config_path, weights = directory / "config.json", directory / f"{hook}.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise ProbeError(f"{directory}: no saved probe for {hook!r} (config.json + .safetensors)")
    config = ProbeSettings.from_json(read_json(config_path, what="probe config"))
    tensors = read_safetensors(weights, hint="a `leelalab probe train` directory")
    try:
        d_model = (
            tensors["w_x"].shape[1] if config.probe == "bilinear" else tensors["weight"].shape[0]
        )
        probe = _make_probe(config, d_model)
        probe.load_state_dict(tensors)
    except (KeyError, IndexError, RuntimeError):
        # Another file's tensors, or a config that does not match them.
        raise ProbeError(f"{weights}: not the weights of a {config.probe} probe") from None
    return probe.eval(), config


@dataclass(frozen=True)
class ProbeEvaluation(Mapping[str, float]):
    """Accuracies of saved probes on a store (a mapping hook → accuracy), with counts."""

    accuracy: dict[str, float]
    correct: dict[str, int]
    evaluated: dict[str, int]
    """Puzzles each probe was scored on (those with the target and query moves)."""
    puzzles: int
    """Store puzzles used: all but the excluded ones."""
    excluded: int
    """Store puzzles left out because the probes trained on them."""

    def __getitem__(self, hook: str) -> float:
        return self.accuracy[hook]

    def __iter__(self) -> Iterator[str]:
        return iter(self.accuracy)

    def __len__(self) -> int:
        return len(self.accuracy)

    def interval(self, hook: str, level: float = 0.95) -> Estimate:
        """The accuracy of ``hook``'s probe with its Wilson interval."""
        return proportion_ci(self.correct[hook], self.evaluated[hook], level=level)


def training_puzzle_ids(directory: str | os.PathLike[str]) -> set[str]:
    """The ids of the puzzles the saved probes of ``directory`` trained on."""
    path = Path(directory) / SPLIT_FILE
    if not path.is_file():
        raise ProbeError(
            f"{directory} does not record which puzzles its probes trained on (made by an "
            "older leelalab): retrain it with `leelalab probe train`, or evaluate on every "
            "puzzle knowingly with --include-training"
        )
    ids = read_json(path, what="training split").get("train_puzzle_ids")
    if not isinstance(ids, list):
        raise ProbeError(f"{path}: unreadable training split (no train_puzzle_ids list)")
    return {str(i) for i in ids}


def evaluate_saved_probes(
    directory: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    include_training: bool = False,
) -> ProbeEvaluation:
    """Accuracy of each saved probe of ``directory`` on the puzzles of a store.

    Puzzles the probes trained on (``split.json``) are left out, and counted in
    ``excluded``, unless ``include_training``: accuracy on training puzzles overstates
    what a probe reads.

    Raises:
        ProbeError: no saved probe; no record of the training puzzles (an older probe
            directory, unless ``include_training``); no puzzle left to evaluate.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ProbeError(f"{directory}: no such probe directory")
    weights_files = sorted(directory.glob("*.safetensors"))
    if not weights_files:
        raise ProbeError(f"{directory}: no saved probes")
    store = ActivationStore(store_path)
    rows = np.arange(store.n)
    excluded = 0
    if not include_training:
        trained = training_puzzle_ids(directory)
        keep = np.array([str(i) not in trained for i in store.puzzle_ids], dtype=bool)
        excluded = int((~keep).sum())
        rows = rows[keep]
        if rows.size == 0:
            raise ProbeError(
                f"every puzzle of {store.path} ({store.n}) is one the probes of {directory} "
                "trained on: nothing to evaluate"
            )
    accuracy, correct, evaluated = {}, {}, {}
    for weights in weights_files:
        hook = weights.name[: -len(".safetensors")]
        probe, config = load_probe(directory, hook)
        labels = target_labels(store, config.target)
        queries = (
            target_labels(store, config.query)
            if config.query and config.probe == "bilinear"
            else None
        )
        score = score_probe(probe, store, hook, labels, queries, rows)
        correct[hook], evaluated[hook], accuracy[hook] = score.correct, score.total, score.accuracy
    return ProbeEvaluation(accuracy, correct, evaluated, int(rows.size), excluded)
