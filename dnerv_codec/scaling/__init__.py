"""Long videos: the work on one chunk (chunkwork.py) and where chunks run (runners.py)."""
