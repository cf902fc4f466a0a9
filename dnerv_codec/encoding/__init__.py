"""The encode side's rooms, below codec.encode (the pipeline in order): its options
(options.py), the chunks' jobs and the time plan (planning.py), the candidate files the rate
search measures (filebuild.py), and the self-check of the file about to be handed over
(selfcheck.py)."""
