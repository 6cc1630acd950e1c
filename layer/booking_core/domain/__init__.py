"""Plain-Python domain: no client library is imported below this package."""
