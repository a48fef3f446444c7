"""The two public pages, `/docs` (the API reference) and `/console` (the operator console):
static files served by the app itself, under a strict Content-Security-Policy."""
