"""Wire models: the request and response shapes of the Managed Agents API (api-reference.md), one module per resource.

They belong to no layer: the API routes, the services, the harness and the triggers all import them, and they import
nothing of the platform but each other. `api/` keeps routes, SSE and error rendering only.
"""
