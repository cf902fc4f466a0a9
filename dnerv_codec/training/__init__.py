"""The overfitting loop (`loop.py`), rate-aware or not, and its checkpoints."""
