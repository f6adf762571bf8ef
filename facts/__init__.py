"""Custom pyinfra facts: what the deploys need to know about a host, read without changing it."""
