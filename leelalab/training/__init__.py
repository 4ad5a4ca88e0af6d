"""Training networks in lc0 format: students distilled from a teacher (``distill``)."""
