"""Analysis of tinv sweeps: result rows -> one CSV table -> the paper's figures.

`collect.py` is the only part that reads job folders (and `gallery.py`, which needs the
sample images). Every plot, the paired effects (`effects.py`) and the paper's claims
(`claims.py`) rebuild from the CSV alone; `protocol.py` keeps incomparable rows apart.
`sweep_run.py` does it all at a sweep's end and logs it as the sweep's own W&B run.
"""
