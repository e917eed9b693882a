"""The worker process: the Faust app (app.py), its shell (processor.py) and the forwarding
decisions it wraps (forwarding.py)."""
