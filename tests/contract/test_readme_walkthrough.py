"""The README's "Your first ten minutes", run as a newcomer runs it: its shell blocks, verbatim but
for the client id and secret it tells the reader to paste and the `make run` line (the live
server stands in for it), in bash against a live server with a real Celery worker. The usage
they send through `/ingest` and through a collector and its stream is counted, and the README's
own closing `/usage` call answers it (issue 23 item 8)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from metering.models import DataCorrection
from tests.conftest import make_access
from tests.support.celery_worker import ROOT, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

README = ROOT / "README.md"


def walkthrough_blocks() -> list[str]:
    """The ```sh blocks of the section, in order."""
    text = README.read_text()
    section = text[text.index("### Your first ten minutes") :]
    section = section[: section.index("\n### ", 1)]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def as_pasted(block: str, client_id: str, secret: str) -> str:
    lines = [line for line in block.splitlines() if not line.startswith(("make run", "export PORT"))]
    script = "\n".join(lines)
    script = script.replace('"client_id": "…"', f'"client_id": "{client_id}"')
    return script.replace('"client_secret": "…"', f'"client_secret": "{secret}"')


def run(script: str, base: str, tmp_path: Path) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env={**os.environ, "BASE": base, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def customer_total(answer: str) -> float:
    report = json.loads(answer.strip().splitlines()[-1])
    groups = report["clientMeters"]["api-calls"]
    return sum(
        value
        for group in groups
        if group["groupInfo"] == {"customerId": "customer-1"}
        for record in group["records"]
        for value in record.values()
    )


def test_the_readme_walkthrough_counts_what_it_sends(live_server, account, tmp_path):
    access, secret = make_access(account, name="walkthrough")
    blocks = [as_pasted(block, access.client_id, secret) for block in walkthrough_blocks()]
    assert len(blocks) >= 5 and "/ingest" in blocks[2] and "/usage" in blocks[-1]
    # Every block but the last in one shell (they share TOKEN and COLLECTOR, as one terminal would).
    setup, query = "\n".join(blocks[1:-1]), blocks[-1]
    with running_worker(tmp_path):
        output = run(
            setup + "\n" + "\n".join(f"printf '\\n{name}=%s\\n' ${name}" for name in ("TOKEN", "COLLECTOR")),
            live_server.url,
            tmp_path,
        )
        values = dict(
            line.split("=", 1) for line in output.splitlines() if re.match(r"^(TOKEN|COLLECTOR)=", line)
        )
        for answer in output.splitlines():
            assert '"code"' not in answer, answer  # no API error on the way
        exported = f"TOKEN={values['TOKEN']}\n"
        deadline = time.monotonic() + 60
        total = customer_total(run(exported + query, live_server.url, tmp_path))
        while total < 6 and time.monotonic() < deadline:
            time.sleep(1)
            total = customer_total(run(exported + query, live_server.url, tmp_path))
    assert total == 6.0
    assert list(DataCorrection.objects.values_list("reason", flat=True)) == []
