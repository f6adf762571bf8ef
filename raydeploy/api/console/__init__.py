"""The operator's web console: server-rendered pages over the API's own functions, served at / by `raydeploy api`.

It lives beside the API it is a skin of (raydeploy/api/, as DESIGN.md says), not in the repository's
templates/, which holds what is rendered onto hosts. Pages are Jinja2 templates with autoescaping
(templates/), a little of our own JavaScript and CSS (static/), no third-party code. Signing in makes a
server-side session bound to an API token (sessions.py); every page and action takes the caller's
identity from that session and goes through the same role checks and route functions as /api/v1
(access.py, pages.py, forms.py).
"""
