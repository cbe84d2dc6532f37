"""The HTTP API: `create_app(deployment)` builds the FastAPI application."""
