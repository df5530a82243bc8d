"""Where events come from: an HTTP listener (Dovecot http-post, NDJSON, Stalwart
webhooks) and line streams."""
