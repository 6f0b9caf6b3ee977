"""docs/passes.md's rewrite table is generated from RULES and must stay current."""
import os

from kiln.passes.doc import rule_table


def test_rewrite_table_is_current():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "passes.md")
    text = open(path).read()
    table = text.split("<!-- rewrite-table -->\n", 1)[1].split("<!-- /rewrite-table -->", 1)[0]
    assert table == rule_table(), "docs/passes.md is stale: regenerate it with `python -m kiln.passes.doc`"
