"""The admin API: routes, tokens and their scopes, and its OpenAPI document."""
