"""The online study: the lab's design served to participants' browsers (`percept serve`, `percept export-online`).

Modules: config (settings of both commands), schema (tables and numbered migrations), security (HMAC
keys, tokens, headers, limits), store (every database transaction), assign (list assignment and the
active-policy hook), server (the FastAPI app), export (response contract files). The browser client
lives in static/ (built against the JSON API that server.py documents).
"""
