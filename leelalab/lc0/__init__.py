"""Everything that must be bit-exact with lc0: the network file format (``weights``), board →
input planes (``encoding``), the 1858-move policy index (``policy_map``) and model-frame
squares (``squares``). Depends on nothing else in leelalab but ``errors``.
"""
