#!/usr/bin/env bash
# Regenerate every committed figure from its command (the README names them).
#
#   scripts/regenerate_figures.sh [TIER ...]     TIER: committed (default), runs, expensive
#
# committed  from files in the repository (seconds): figures/lab-t6-128/training,
#            probe_accuracy; anomaly/figures/anomaly_coverage_risk and anomaly_auroc_*.
#            tests/plots/test_committed_figures.py checks that these are current.
# runs       from runs recomputed on the shipped sample (about 12 min on this 2-core machine,
#            shared, niced, 2026-12-08: filter 14 s, corrupt 26 s, strata-patching 309 s,
#            coupling with Stockfish 192 s, plot analyses 32 s, lab-t6-128 patch residual /
#            heads / head search / single entry 34 / 44 / 45 / 10 s, plot patching 34 s):
#            figures/analyses/{predictions,strata_patching,coupling,move_lift,themes} and
#            figures/lab-t6-128/{groups_log_odds_all,head_patching_log_odds,head_search,
#            single_entry_L3H1}.
# expensive  hours on 2 cores (search: 13 min for the whole-run sample + 13 min for the three strata, 2026-12-08; refutations 61 min; measured here
#            2026-12-08, niced on the shared machine: lab-t6-128 filter 270 s (123 s on a
#            rerun), lens train 939 s (1,043 s), lens run 62 s (40 s), steer 1,116 s; future
#            boards not measured): figures/analyses/{accuracy_by_depth,
#            accuracy_by_rating,search_gain,search_by_stratum} and figures/lab-t6-128/
#            {lens_layers,lens_emergence,refutation_depth,future_board,steering}. The
#            commands for lab-t6-128 are the README's with `--net lab-t6-128` ("The commands
#            are those above with --net lab-t6-128").
#
# Run outputs go to $RUNS (default runs/, git-ignored); figures are written in place.
# Figures: Agg backend, PDF + PNG, no LaTeX (leelalab.plots.boards.PAPER_STYLE).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
# Byte-identical PDFs from run to run: matplotlib stamps this date instead of the clock.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
RUNS=${RUNS:-runs}
STOCKFISH=${STOCKFISH:-$(command -v stockfish || echo /usr/games/stockfish)}
tiers=("${@:-committed}")

committed() {
    leelalab plot training lab-t6-128 --output figures/lab-t6-128/training.pdf
    leelalab plot probes probes/lab-t6-128-move3-target \
        probes/lab-t6-128-random-init-move3-target --output figures/lab-t6-128
    # `leelalab plot anomaly R/backdoor R/mechanism R/ood --out anomaly/figures` also draws
    # the score histograms, which need each run's scores.h5 (not committed); the AUROC and
    # coverage-risk figures need only the committed results.json.
    python - <<'EOF'
from pathlib import Path

import matplotlib.pyplot as plt

from leelalab.anomaly.results import AnomalyResults
from leelalab.plots.anomaly import auroc_figure, coverage_risk_figure
from leelalab.plots.boards import save_figure

out = Path("anomaly/figures")
tasks = ("backdoor", "mechanism", "ood")
runs = [AnomalyResults.load(f"anomaly/maia-1900-{task}") for task in tasks]
for results in runs:
    # The committed names come from run directories named after their task.
    save_figure(auroc_figure(results), out / f"anomaly_auroc_{results.task}_{results.task}")
    plt.close("all")
save_figure(coverage_risk_figure(runs), out / "anomaly_coverage_risk")
EOF
}

runs() {
    leelalab puzzles filter --output "$RUNS/sample" --no-progress
    leelalab puzzles corrupt "$RUNS/sample" --no-progress
    leelalab analyze strata-patching "$RUNS/sample" --output "$RUNS/strata-patching" \
        --unfiltered 300 --no-progress
    leelalab analyze coupling "$RUNS/sample" --output "$RUNS/coupling" --sample 600 \
        --stockfish "$STOCKFISH" --no-progress
    leelalab plot analyses --dataset "$RUNS/sample" --patching "$RUNS/strata-patching" \
        --coupling "$RUNS/coupling" --output figures/analyses --overwrite
    leelalab patch residual "$RUNS/sample" --net lab-t6-128 --output "$RUNS/t6-patch-residual"
    leelalab patch heads "$RUNS/sample" --net lab-t6-128 --output "$RUNS/t6-patch-heads"
    leelalab heads search "$RUNS/sample" --net lab-t6-128 --output "$RUNS/t6-head-search"
    leelalab heads single-entry "$RUNS/sample" --net lab-t6-128 --layer 3 --head 1 \
        --output "$RUNS/t6-L3H1"
    # plot patching writes every figure the runs support; the README shows four of them.
    leelalab plot patching "$RUNS/t6-patch-residual" "$RUNS/t6-patch-heads" \
        "$RUNS/t6-head-search" "$RUNS/t6-L3H1" --output "$RUNS/t6-figures"
    for name in groups_log_odds_all head_patching_log_odds head_search single_entry_L3H1; do
        cp "$RUNS/t6-figures/$name.pdf" "$RUNS/t6-figures/$name.png" figures/lab-t6-128/
    done
}

expensive() {
    # Search budgets (lc0 on PATH): the whole-run sample and one run per stratum.
    nice -n 10 leelalab analyze search "$RUNS/sample" --output "$RUNS/search" --per-cell 20 \
        --workers 2 --no-progress
    nice -n 10 leelalab analyze search "$RUNS/sample" --stratum paper --per-cell 136 \
        --output "$RUNS/search-paper" --workers 2 --no-progress
    for stratum in unfiltered weak-solved; do
        nice -n 10 leelalab analyze search "$RUNS/sample" --stratum "$stratum" --per-cell 10 \
            --output "$RUNS/search-$stratum" --workers 2 --no-progress
    done
    leelalab plot analyses --dataset "$RUNS/sample" --patching "$RUNS/strata-patching" \
        --coupling "$RUNS/coupling" --search "$RUNS/search" \
        --stratum-search "$RUNS/search-paper" "$RUNS/search-unfiltered" \
        "$RUNS/search-weak-solved" --output figures/analyses --overwrite
    # lab-t6-128 inside the network.
    leelalab puzzles filter --strong lab-t6-128 --weak weak-maia-1900 \
        --output "$RUNS/t6-sample" --no-progress
    leelalab lens train --net lab-t6-128 --positions 32000 --epochs 3 \
        --output "$RUNS/t6-tuned-lens"
    leelalab lens run "$RUNS/t6-sample" --net lab-t6-128 --tuned-lens "$RUNS/t6-tuned-lens" \
        --output "$RUNS/t6-lens" --no-progress
    leelalab plot lens "$RUNS/t6-lens" --output figures/lab-t6-128
    leelalab refutations find "$RUNS/sample" --sample 400 --stockfish "$STOCKFISH" \
        --output "$RUNS/t6-refutations" --no-progress
    leelalab refutations measure "$RUNS/t6-refutations" --strong lab-t6-128 \
        --weak weak-maia-1900
    leelalab plot refutations "$RUNS/t6-refutations" --output figures/lab-t6-128
    leelalab activations cache "$RUNS/sample" --net lab-t6-128 \
        --hooks input.hook_out 'blocks.*.hook_resid_post' --output "$RUNS/t6-acts-board.h5"
    leelalab activations cache "$RUNS/sample" --net lab-t6-128 --random-init 0 \
        --hooks input.hook_out 'blocks.*.hook_resid_post' \
        --output "$RUNS/t6-acts-board-random.h5"
    leelalab future-board "$RUNS/t6-acts-board.h5" --seeds 0 1 \
        --output "$RUNS/t6-future-board" --no-progress
    leelalab future-board "$RUNS/t6-acts-board-random.h5" --seeds 0 1 \
        --output "$RUNS/t6-future-board-random" --no-progress
    leelalab plot future-board "$RUNS/t6-future-board" \
        --random-init "$RUNS/t6-future-board-random" --output figures/lab-t6-128
    leelalab steer "$RUNS/sample" --probes probes/lab-t6-128-move3-target --net lab-t6-128 \
        --output "$RUNS/t6-steering" --no-progress
    leelalab plot steering "$RUNS/t6-steering" --output figures/lab-t6-128
}

for tier in "${tiers[@]}"; do
    case "$tier" in
        committed | runs | expensive) "$tier" ;;
        *) echo "regenerate_figures.sh: unknown tier '$tier' (committed, runs, expensive)" >&2; exit 2 ;;
    esac
done
