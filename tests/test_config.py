"""config: every bad input named in the issue, with its exact message, file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from together_reconcile import config
from together_reconcile.config import (
    Account,
    ConfigError,
    Problem,
    ValidationReport,
    load_accounts,
    validate_paths,
)

GOOD = "shopify_store: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
SECRET_HEX = "0123456789abcdef0123456789abcdef"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, content: str | bytes, name: str = "acme.yaml") -> list[Problem]:
    accounts = tmp_path / "accounts"
    path = write(accounts, name, content)
    report = validate_paths([path], accounts)
    assert report.files == 1
    return report.problems


def only(tmp_path: Path, content: str | bytes, name: str = "acme.yaml") -> tuple[int, int, str]:
    found = problems_of(tmp_path, content, name)
    assert len(found) == 1, found
    return found[0].line, found[0].col, found[0].message


def test_valid_file_has_no_problem(tmp_path: Path) -> None:
    assert problems_of(tmp_path, GOOD) == []


def test_upper_case_domains_are_valid_and_stored_lower_case(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    write(
        accounts,
        "acme.yaml",
        "shopify_store: ACME.MyShopify.COM\ngorgias_account: Acme.Gorgias.com\n",
    )
    loaded = load_accounts(accounts)
    account = loaded["acme.gorgias.com"].account
    assert account.shopify_store == "acme.myshopify.com"
    assert account.gorgias_account == "acme.gorgias.com"
    assert loaded["acme.gorgias.com"].path == accounts / "acme.yaml"


def test_invalid_yaml_reports_the_parser_line(tmp_path: Path) -> None:
    text = "shopify_store: acme.myshopify.com\ngorgias_account: acme: gorgias.com\n"
    assert only(tmp_path, text) == (
        2,
        22,
        "invalid YAML: mapping values are not allowed in this context",
    )


def test_empty_file(tmp_path: Path) -> None:
    assert only(tmp_path, "") == (1, 1, "file is empty: write shopify_store and gorgias_account")


def test_comment_only_file_is_empty(tmp_path: Path) -> None:
    assert only(tmp_path, "# nothing\n") == (
        1,
        1,
        "file is empty: write shopify_store and gorgias_account",
    )


@pytest.mark.parametrize(
    ("text", "kind"), [("- acme.myshopify.com\n", "a list"), ("acme.myshopify.com\n", "a string")]
)
def test_root_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    assert only(tmp_path, text) == (
        1,
        1,
        f"expected a mapping with shopify_store and gorgias_account, got {kind}",
    )


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path, "shopify_stor: acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
    )
    assert [(p.line, p.col, p.message) for p in found] == [
        (1, 1, 'missing required key "shopify_store"'),
        (1, 1, 'unknown key "shopify_stor": did you mean "shopify_store"?'),
    ]


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path: Path) -> None:
    assert only(tmp_path, GOOD + "colour: blue\n") == (
        3,
        1,
        'unknown key "colour": allowed keys are shopify_store, gorgias_account, enabled, '
        "lookback_days, widget, notes",
    )


def test_unknown_widget_key(tmp_path: Path) -> None:
    assert only(tmp_path, GOOD + "widget:\n  titel: Orders\n") == (
        4,
        3,
        'unknown key "titel" in widget: did you mean "title"?',
    )


def test_missing_required_key_at_line_1(tmp_path: Path) -> None:
    assert only(tmp_path, "# comment\nshopify_store: acme.myshopify.com\n") == (
        1,
        1,
        'missing required key "gorgias_account"',
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('enabled: "yes"', "enabled: expected true or false, got a string"),
        ('enabled: "false"', "enabled: expected true or false, got a string (remove the quotes)"),
        ("enabled: yes", "enabled: expected true or false, got a string"),
        (
            'lookback_days: "60"',
            "lookback_days: expected a whole number, got a string (remove the quotes)",
        ),
        ("lookback_days: 0", "lookback_days: must be between 1 and 60, got 0"),
        ("lookback_days: 61", "lookback_days: must be between 1 and 60, got 61"),
        ("widget: ticket", "widget: expected a mapping of keys, got a string"),
        ("notes: 12", "notes: expected text, got a whole number"),
    ],
)
def test_wrong_types_and_ranges(tmp_path: Path, line: str, message: str) -> None:
    value_col = line.index(":") + 3
    assert only(tmp_path, GOOD + line + "\n") == (3, value_col, message)


def test_widget_values(tmp_path: Path) -> None:
    text = GOOD + "widget:\n  context: sidebar\n  order: -1\n  title: ''\n"
    found = [(p.line, p.col, p.message) for p in problems_of(tmp_path, text)]
    assert found == [
        (4, 12, 'widget.context: must be "ticket" or "customer", got "sidebar"'),
        (5, 10, "widget.order: must be between 0 and 1000, got -1"),
        (6, 10, "widget.title: must not be empty"),
    ]


def test_store_that_is_not_myshopify(tmp_path: Path) -> None:
    text = "shopify_store: acme.example.com\ngorgias_account: acme.gorgias.com\n"
    assert only(tmp_path, text) == (
        1,
        16,
        'shopify_store: "acme.example.com" is not a Shopify store domain: '
        'write <name>.myshopify.com, e.g. "acme.myshopify.com"',
    )


def test_url_instead_of_domain(tmp_path: Path) -> None:
    text = "shopify_store: https://acme.myshopify.com/\ngorgias_account: acme.gorgias.com\n"
    assert only(tmp_path, text) == (
        1,
        16,
        'shopify_store: write only the domain "acme.myshopify.com", not a URL',
    )


def test_bad_gorgias_domain(tmp_path: Path) -> None:
    text = "shopify_store: acme.myshopify.com\ngorgias_account: acme.zendesk.com\n"
    assert only(tmp_path, text) == (
        2,
        18,
        'gorgias_account: "acme.zendesk.com" is not a Gorgias account domain: '
        'write <name>.gorgias.com, e.g. "acme.gorgias.com"',
    )


def test_bad_subdomain(tmp_path: Path) -> None:
    text = "shopify_store: -acme.myshopify.com\ngorgias_account: acme.gorgias.com\n"
    assert only(tmp_path, text) == (
        1,
        16,
        'shopify_store: "-acme.myshopify.com" has an invalid name before .myshopify.com: '
        "use 1 to 63 letters, digits or hyphens, starting with a letter or digit",
    )


def test_stem_must_equal_gorgias_subdomain(tmp_path: Path) -> None:
    assert only(tmp_path, GOOD, name="acme-corp.yaml") == (
        2,
        18,
        'file name "acme-corp.yaml" does not match gorgias_account "acme.gorgias.com": '
        "rename the file to acme.yaml or correct gorgias_account",
    )


def test_duplicate_keys(tmp_path: Path) -> None:
    assert only(tmp_path, GOOD + "enabled: true\nenabled: false\n") == (
        4,
        1,
        'duplicate key "enabled" (first set on line 3): keep only one',
    )


def test_several_documents(tmp_path: Path) -> None:
    assert only(tmp_path, GOOD + "---\n" + GOOD) == (
        3,
        1,
        "several YAML documents in one file: an account file is a single document; "
        'remove the "---" and everything after it (or move it to its own file)',
    )


def test_anchors_and_aliases(tmp_path: Path) -> None:
    text = "shopify_store: &s acme.myshopify.com\ngorgias_account: acme.gorgias.com\nnotes: *s\n"
    found = [(p.line, p.col, p.message) for p in problems_of(tmp_path, text)]
    assert found == [
        (1, 16, 'anchors are not allowed in account files (found "&s"): write values out in full'),
        (3, 8, 'aliases are not allowed in account files (found "*s"): write values out in full'),
    ]


@pytest.mark.timeout(10)
def test_alias_bomb_is_rejected_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for index in range(1, 12):
        previous = chr(ord("a") + index - 1)
        name = chr(ord("a") + index)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    found = problems_of(tmp_path, "\n".join(lines) + "\n")
    assert [p.message for p in found] == [
        'anchors are not allowed in account files (found "&a", and 11 more): '
        "write values out in full",
        'aliases are not allowed in account files (found "*a", and 98 more): '
        "write values out in full",
    ]


def test_tags(tmp_path: Path) -> None:
    assert only(tmp_path, GOOD + "enabled: !!bool true\n") == (
        3,
        10,
        'tags are not allowed in account files (found "tag:yaml.org,2002:bool"): remove it',
    )


def test_file_over_64_kib(tmp_path: Path) -> None:
    content = GOOD + "notes: '" + "x " * 40_000 + "'\n"
    size = len(content.encode())
    assert only(tmp_path, content) == (
        1,
        1,
        f"file is {size} bytes, over the 64 KiB limit: an account file is a few short lines",
    )


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    content = GOOD.encode() + b"notes: caf\xe9\n"
    assert only(tmp_path, content) == (
        3,
        11,
        "file is not valid UTF-8 (byte 0xe9): save it with UTF-8 encoding",
    )


SECRET_MESSAGE = (
    "secrets never go in account files: remove it "
    "(tokens are stored with `together-reconcile credentials put`)"
)


@pytest.mark.parametrize("key", ["token", "access_token", "password", "secret", "api_key"])
def test_secret_looking_key(tmp_path: Path, key: str) -> None:
    line, col, message = only(tmp_path, GOOD + f"{key}: hunter2\n")
    assert (line, col, message) == (3, 1, f'key "{key}" looks like a secret; {SECRET_MESSAGE}')
    assert "hunter2" not in message


def test_secret_looking_key_nested(tmp_path: Path) -> None:
    line, col, message = only(tmp_path, GOOD + "widget:\n  refresh_token: x\n")
    assert (line, col) == (4, 3)
    assert message == f'key "widget.refresh_token" looks like a secret; {SECRET_MESSAGE}'


@pytest.mark.parametrize(
    "value",
    [
        "shpat_" + SECRET_HEX,
        "shpca_" + SECRET_HEX,
        "see shppa_abc123 for access",
        "shpss_" + SECRET_HEX,
        SECRET_HEX,
        "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZQ==",
        "key: " + "a1B2_c3D4-" * 4,
    ],
)
def test_secret_looking_value(tmp_path: Path, value: str) -> None:
    line, col, message = only(tmp_path, GOOD + f"notes: '{value}'\n")
    assert (line, col) == (3, 8)
    assert message == (
        f"notes: this value looks like a secret (an access token or key); {SECRET_MESSAGE}"
    )
    assert value not in message


def test_secret_in_an_unknown_key_is_not_echoed(tmp_path: Path) -> None:
    found = problems_of(tmp_path, GOOD + f"extra: shpat_{SECRET_HEX}\n")
    assert [p.message for p in found] == [
        'unknown key "extra": allowed keys are shopify_store, gorgias_account, enabled, '
        "lookback_days, widget, notes",
        f"extra: this value looks like a secret (an access token or key); {SECRET_MESSAGE}",
    ]
    assert all(SECRET_HEX not in str(p) for p in found)


def test_a_long_store_name_is_not_a_secret(tmp_path: Path) -> None:
    name = "a" * 40
    text = f"shopify_store: {name}.myshopify.com\ngorgias_account: {name}.gorgias.com\n"
    assert problems_of(tmp_path, text, name=f"{name}.yaml") == []


def test_ordinary_notes_are_fine(tmp_path: Path) -> None:
    assert problems_of(tmp_path, GOOD + "notes: Asked for it in ticket 4711, see Slack.\n") == []


def test_every_problem_of_a_file_sorted_by_line(tmp_path: Path) -> None:
    text = 'lookback_days: 0\nshopify_store: acme.example.com\nenabled: "no"\n'
    found = [(p.line, p.message.split(":")[0]) for p in problems_of(tmp_path, text)]
    assert found == [
        (1, 'missing required key "gorgias_account"'),
        (1, "lookback_days"),
        (2, "shopify_store"),
        (3, "enabled"),
    ]


def test_same_store_in_two_files_when_only_one_is_given(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    write(accounts, "acme.yaml", GOOD)
    other = write(
        accounts,
        "beta.yaml",
        "gorgias_account: beta.gorgias.com\nshopify_store: ACME.myshopify.com\n",
    )
    report = validate_paths([other], accounts)
    assert report == ValidationReport(
        1,
        [
            Problem(
                other,
                2,
                16,
                f'shopify_store "acme.myshopify.com" is also linked in {accounts / "acme.yaml"}: '
                "a store links to one Gorgias account",
            )
        ],
    )


def test_same_store_in_two_files_flags_each(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    first = write(accounts, "acme.yaml", GOOD)
    second = write(
        accounts,
        "beta.yaml",
        "shopify_store: acme.myshopify.com\ngorgias_account: beta.gorgias.com\n",
    )
    report = validate_paths([], accounts)
    assert [(p.path, p.line, p.col) for p in report.problems] == [(first, 1, 16), (second, 1, 16)]
    assert str(second) in report.problems[0].message
    assert str(first) in report.problems[1].message
    assert report.summary == "2 files, 2 problems"


def test_two_files_for_the_same_gorgias_account(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    first = write(accounts, "acme.yaml", GOOD)
    second = write(
        accounts,
        "acme.yml",
        "shopify_store: other.myshopify.com\ngorgias_account: acme.gorgias.com\n",
    )
    report = validate_paths([second], accounts)
    assert [str(p) for p in report.problems] == [
        f'{second}:2:18: gorgias_account "acme.gorgias.com" is also configured in {first}: '
        "keep one file per account"
    ]


def test_folder_paths_and_missing_paths(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    write(accounts, "acme.yaml", GOOD)
    write(accounts, "README.md", "not an account")
    missing = tmp_path / "nope.yaml"
    report = validate_paths([accounts, missing], accounts)
    assert report.files == 1
    assert [str(p) for p in report.problems] == [f"{missing}:1:1: no such file or folder"]


def test_summary_singular_and_plural() -> None:
    problem = Problem(Path("a.yaml"), 1, 1, "x")
    assert ValidationReport(1, [problem]).summary == "1 file, 1 problem"
    assert ValidationReport(0, []).summary == "0 files, 0 problems"
    assert ValidationReport(3, [problem, problem]).summary == "3 files, 2 problems"


def test_problems_sort_by_path_then_line() -> None:
    unsorted = [
        Problem(Path("b.yaml"), 1, 1, "x"),
        Problem(Path("a.yaml"), 9, 1, "x"),
        Problem(Path("a.yaml"), 2, 5, "x"),
    ]
    assert [(str(p.path), p.line) for p in sorted(unsorted)] == [
        ("a.yaml", 2),
        ("a.yaml", 9),
        ("b.yaml", 1),
    ]


def test_load_accounts_raises_with_every_problem(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    write(accounts, "acme.yaml", GOOD + "enabled: 'no'\n")
    write(accounts, "beta.yaml", "")
    with pytest.raises(ConfigError) as caught:
        load_accounts(accounts)
    assert [p.path.name for p in caught.value.problems] == ["acme.yaml", "beta.yaml"]


def test_load_accounts_defaults(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    write(accounts, "acme.yaml", GOOD)
    account = load_accounts(accounts)["acme.gorgias.com"].account
    assert account == Account(
        shopify_store="acme.myshopify.com", gorgias_account="acme.gorgias.com"
    )
    assert (account.enabled, account.lookback_days, account.widget.context) == (True, 60, "ticket")
    assert (account.gorgias_subdomain, account.shopify_subdomain) == ("acme", "acme")


def test_example_accounts_are_valid() -> None:
    accounts = Path(__file__).resolve().parents[1] / "accounts"
    loaded = load_accounts(accounts)
    assert sorted(loaded) == ["acme.gorgias.com", "globex.gorgias.com", "initech.gorgias.com"]
    assert loaded["globex.gorgias.com"].account.lookback_days == 30


@pytest.mark.parametrize(
    ("pattern_name", "value"),
    [
        ("GORGIAS_ACCOUNT_RE", "acme.gorgias.com\n"),
        ("SHOPIFY_STORE_RE", "acme.myshopify.com\n"),
        ("SUBDOMAIN_RE", "acme\n"),
    ],
)
def test_domain_patterns_refuse_a_trailing_newline(pattern_name: str, value: str) -> None:
    pattern = getattr(config, pattern_name)
    assert pattern.match(value.rstrip("\n"))
    assert pattern.match(value) is None
