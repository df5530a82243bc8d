"""Delivery drivers (file, unix, http-post, log, drop): each knows one destination."""
