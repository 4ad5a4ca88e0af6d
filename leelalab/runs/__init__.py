"""Long experiments' bookkeeping: resumable chunked runs, atomic result files and the
``run.json`` provenance every output carries (``results``). Used by every experiment layer.
"""
