"""Gorgias: the REST client, the OAuth token endpoint, and the install/callback pages."""
