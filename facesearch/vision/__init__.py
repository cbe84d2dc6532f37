"""Vision: decoding, detection, alignment, embedding and quality.

No database, no web layer, and nothing downloaded at run time.
"""
