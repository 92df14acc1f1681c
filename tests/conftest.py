pytest_plugins = [
    "tests.plugins.store_fixtures",
    "tests.plugins.sandbox_fixtures",
]
