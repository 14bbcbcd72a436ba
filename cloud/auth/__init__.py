"""Authentication and authorisation: API keys and roles."""
