"""
Workers (issue #14): a parent binds the API port once and supervises N
worker processes that each adopt it, each a whole proxy with its own
reactor, key cache and writer.  See docs/decisions.md ("Workers").
"""
