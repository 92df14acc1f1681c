"""Why an account cannot be reconciled: the blocked-reason vocabulary.

Below both the Gorgias token code (which decides that an account is not connected, must
reconnect, or has its credentials rejected) and the planner (which reports it), so neither
imports the other. The first three names are SPEC; the last two are observation failures.
"""

from __future__ import annotations

NOT_CONNECTED = "not_connected"
RECONNECT_NEEDED = "reconnect_needed"
CREDENTIALS_REJECTED = "credentials_rejected"
GORGIAS_UNAVAILABLE = "gorgias_unavailable"
GORGIAS_ERROR = "gorgias_error"

BLOCKED_MESSAGES = {
    NOT_CONNECTED: "no Gorgias credentials stored: the merchant has not connected the app yet",
    RECONNECT_NEEDED: "the refresh token was refused: the merchant must connect the app again",
    CREDENTIALS_REJECTED: "Gorgias refused the stored credentials (401)",
    GORGIAS_UNAVAILABLE: "Gorgias did not answer (retries exhausted); run the plan again later",
    GORGIAS_ERROR: "Gorgias answered with an error",
}

__all__ = [
    "BLOCKED_MESSAGES",
    "CREDENTIALS_REJECTED",
    "GORGIAS_ERROR",
    "GORGIAS_UNAVAILABLE",
    "NOT_CONNECTED",
    "RECONNECT_NEEDED",
]
