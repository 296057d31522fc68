"""docs/streams.md shows every example configuration; ``create_solution`` makes a solution."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from streams.models import Solution
from tests.streams.conftest import EXAMPLES_DIR

DOCS = Path(__file__).resolve().parents[2] / "docs" / "streams.md"


def test_docs_show_every_example_configuration():
    blocks = [
        json.loads(block)
        for block in re.findall(r"```json\n(.*?)\n```", DOCS.read_text(), re.DOTALL)
        if block.lstrip().startswith("{\n")
    ]
    examples = [json.loads(path.read_text()) for path in sorted(EXAMPLES_DIR.glob("*.json"))]
    assert len(examples) == 3
    for example in examples:
        assert example in blocks, example["name"]


@pytest.mark.django_db
def test_create_solution_command(account):
    out = StringIO()
    call_command("create_solution", "--account", "acme", "--name", "Production", stdout=out)
    printed = json.loads(out.getvalue())
    solution = Solution.objects.get(pk=printed["solutionId"])
    assert (solution.account_id, solution.name, printed["accountId"]) == (
        account.pk,
        "Production",
        str(account.pk),
    )
    with pytest.raises(CommandError, match="A solution with this name exists"):
        call_command("create_solution", "--account", "acme", "--name", "Production", stdout=StringIO())
    with pytest.raises(CommandError, match="No account named 'nobody'"):
        call_command("create_solution", "--account", "nobody", "--name", "X", stdout=StringIO())
