"""Test support for Tecno Rev modules (tecnorev-testing): ``tecnorev.testing.core`` for any
module, ``.auth`` and ``.inventory`` for tests of modules that have those installed."""
