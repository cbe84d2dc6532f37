"""facesearch: a self-hosted face search engine, secure and accountable by design."""

__version__ = "0.1.0"
