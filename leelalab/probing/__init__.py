"""Probing: the streaming HDF5 activation store (``store``) and probes trained on it
(``probes``: bilinear, linear, logistic) with puzzle-grouped splits and control tasks.
"""
