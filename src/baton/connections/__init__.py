"""Connections to external systems: secrets, the HTTP client and (``mcp``) MCP sessions.

Called from the worker side of step types (``steps/``), outside any transaction."""
