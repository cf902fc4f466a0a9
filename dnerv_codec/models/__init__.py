"""The networks: what is trained and what a file's decoder rebuilds. `base.py` is the interface
the rest of the codec relies on; `dnerv.py` is DNeRV and its HNeRV ablation."""
