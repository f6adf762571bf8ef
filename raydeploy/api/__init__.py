"""The REST API (FastAPI): the wrapper's operations for a web front end and for automation."""
