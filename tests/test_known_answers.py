"""Known answers: fixed inputs, fixed outputs, written down once in tests/known_answers/.

The expected values were computed outside the code under test (plain hmac/hashlib following
the derivations written in vectors.json) and the golden JSON files were written and reviewed by
hand. Never regenerate them from `together_reconcile`: a change to any of them changes every
account's event token (each Gorgias integration would answer 401 until the next apply), every
signed OAuth state in flight, or makes every saved plan stale. Such a change must be a
deliberate, reviewed edit of the vector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from together_reconcile.config import AccountFile, load_accounts
from together_reconcile.reconcile.desired import desired_integration, desired_widget
from together_reconcile.reconcile.plan import (
    DesiredResources,
    FieldDiff,
    Observation,
    desired_fingerprint,
    observed_fingerprint,
    plan_account,
)
from together_reconcile.secrets import Keyring, fingerprint

HERE = Path(__file__).parent / "known_answers"
VECTORS: dict[str, Any] = json.loads((HERE / "vectors.json").read_text())
DOMAIN = "acme.gorgias.com"


def golden(name: str) -> Any:
    return json.loads((HERE / name).read_text())


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    """The fixed keys of the vectors (shadows the random keyring fixture on purpose)."""
    return Keyring.from_env(",".join(VECTORS["keys"]))


@pytest.fixture(scope="module")
def acme() -> AccountFile:
    return load_accounts(HERE / "accounts")[DOMAIN]


def acme_desired(acme: AccountFile, keyring: Keyring) -> DesiredResources:
    body = desired_integration(
        acme,
        public_url=VECTORS["desired"]["public_url"],
        event_token=keyring.event_token(DOMAIN),
        commit=VECTORS["desired"]["commit"],
    )
    return DesiredResources(body, lambda iid: desired_widget(acme.account, iid))


# -- secrets ---------------------------------------------------------------------------------


def test_event_tokens_are_the_known_answers(keyring: Keyring) -> None:
    tokens = VECTORS["event_tokens"]
    assert keyring.event_token("acme.gorgias.com") == tokens["acme.gorgias.com"]
    assert keyring.event_token("beta.gorgias.com") == tokens["beta.gorgias.com"]
    # the domain is trimmed and lower-cased before it is derived
    assert keyring.event_token("  ACME.Gorgias.COM \n") == tokens["acme.gorgias.com"]
    second_only = Keyring.from_env(VECTORS["keys"][1])
    assert second_only.event_token(DOMAIN) == tokens["acme.gorgias.com with the second key"]


def test_known_event_tokens_verify_under_either_listed_key(keyring: Keyring) -> None:
    tokens = VECTORS["event_tokens"]
    assert keyring.verify_event_token(DOMAIN, tokens["acme.gorgias.com"])
    assert keyring.verify_event_token(DOMAIN, tokens["acme.gorgias.com with the second key"])
    assert keyring.verify_event_token("Acme.Gorgias.com", tokens["acme.gorgias.com"])
    assert not keyring.verify_event_token(DOMAIN, tokens["beta.gorgias.com"])


def test_signed_value_is_the_known_answer(keyring: Keyring) -> None:
    signed = VECTORS["signed"]
    payload = signed["payload"].encode()
    token = keyring.sign(payload, signed["purpose"], now=signed["now"])
    assert token == signed["token"]
    assert keyring.unsign(signed["token"], signed["purpose"], now=signed["now"]) == payload
    # signed with the newest key: a keyring holding only the older key refuses it
    assert Keyring.from_env(VECTORS["keys"][1]).unsign(token, signed["purpose"]) is None


def test_fingerprints_are_the_known_answers() -> None:
    for value, expected in VECTORS["fingerprints"].items():
        assert fingerprint(value) == expected, value


# -- desired state ---------------------------------------------------------------------------


def test_desired_integration_is_the_golden_body(acme: AccountFile, keyring: Keyring) -> None:
    body = acme_desired(acme, keyring).integration
    assert body == golden("desired_integration.json")
    assert body["http"]["headers"]["X-Together-Token"] == VECTORS["event_tokens"][DOMAIN]


def test_desired_widget_and_template_are_the_golden_ones(acme: AccountFile) -> None:
    widget = desired_widget(acme.account, VECTORS["desired"]["integration_id"])
    assert widget == golden("desired_widget.json")


def test_desired_fingerprint_is_the_known_answer(acme: AccountFile, keyring: Keyring) -> None:
    desired = acme_desired(acme, keyring)
    assert (
        desired_fingerprint(desired, VECTORS["desired"]["integration_id"])
        == VECTORS["desired"]["desired_fingerprint"]
    )


# -- saved plan ------------------------------------------------------------------------------


def observation() -> Observation:
    document = golden("observation.json")
    return Observation(tuple(document["integrations"]), tuple(document["widgets"]))


def test_observed_fingerprint_is_the_known_answer() -> None:
    assert observed_fingerprint(observation()) == VECTORS["observed_fingerprint"]


def test_plan_of_the_known_observation(acme: AccountFile, keyring: Keyring) -> None:
    account = plan_account(DOMAIN, acme_desired(acme, keyring), observation())
    assert account.observed_fingerprint == VECTORS["observed_fingerprint"]
    assert account.action == "update"
    assert account.notes == (
        'integration 5 is named "Together" but was not created by together-reconcile '
        "(no ownership marker): left alone",
    )
    assert [(r.kind, r.action, r.id) for r in account.resources] == [
        ("integration", "reactivate", 10),
        ("widget", "update", 20),
        ("widget", "delete", 21),
        ("integration", "delete", 12),
    ]
    reactivate, widget, widget_delete, _ = account.resources
    assert reactivate.diff == (
        FieldDiff("http.request_content_type", None, "application/json"),
        FieldDiff("http.response_content_type", None, "application/json"),
        FieldDiff("http.form", None, golden("desired_integration.json")["http"]["form"]),
        FieldDiff("deactivated_datetime", "2026-03-01T00:00:00", None),
    )
    template = golden("desired_widget.json")["template"]
    assert widget.diff == (FieldDiff("template", None, template),)
    assert widget_delete.diff == (FieldDiff("integration_id", 12, None),)
    # the extra integration 12 and its widget 21 count as one delete
    assert account.delete_count == 1
