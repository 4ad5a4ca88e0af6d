"""Search versus pattern recognition: behavioural analyses of puzzle strata (predictions,
policy–value coupling, search-budget curves, themes) and analyses inside the network (logit
and tuned lens, refutation depth, future-board probes, steering).
"""
