"""Figures for papers (matplotlib, the ``viz`` extra): board heatmaps and the puzzle figure
(``boards``), patching results (``patching``) and probe accuracies (``probes``).
Plot functions return figures and never show them.
"""
