"""Prints what the schemathesis run generated (operations × statuses), for the reliability report."""

import sys


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("tests.reliability.test_schemathesis")
    if module is None or not module.EXAMPLES:
        return
    terminalreporter.section("schemathesis: requests by operation and status")
    for label, count in sorted(module.EXAMPLES.items()):
        terminalreporter.write_line(f"{count:6d}  {label}")
    terminalreporter.write_line(f"{sum(module.EXAMPLES.values()):6d}  requests in all")
