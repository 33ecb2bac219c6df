"""The HTTP API behind the Cognito JWT authorizer: one Powertools Router per resource.

`request` reads the caller and the request, `errors` maps refusals to HTTP in one place, and
`conversations`, `settings` and `agent` hold the routes; functions/http_api/app.py wires them together.
"""
