"""pyinfra deploys: one file per checkpoint, `ray.py` for all of them, and the @deploy functions they share."""
