"""The event handler Gorgias calls: WSGI app, answer, Shopify query, logs, serving."""
