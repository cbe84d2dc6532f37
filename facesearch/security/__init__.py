"""Security: accounts, passwords, second factor, sessions, API keys, roles, tenancy, audit."""
