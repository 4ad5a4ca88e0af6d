"""Activation patching: primitives on hook points (``primitives``), clean/corrupted pairs and
their metric (``pairs``), residual-stream sweeps (``residual``) and attention-head analyses
(``heads``). Results go through :mod:`leelalab.runs`.
"""
