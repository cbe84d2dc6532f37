"""Vision: decoding, detection, alignment, embedding and quality. No database, no web, no network."""
