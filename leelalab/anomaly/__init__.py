"""Mechanistic anomaly detection: detectors fitted on trusted activations or outputs, chess
tasks with ground truth (backdoor, mechanism distinction, out-of-distribution), and their
evaluation against answering with a distilled model.
"""
