"""docs/ir.md's primitive table is generated from the primitive table and must stay current."""
import os

from kiln.ir.doc import primitive_table


def test_ir_doc_table_is_current():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "ir.md")
    text = open(path).read()
    table = text.split("<!-- primitive-table -->\n", 1)[1].split("<!-- /primitive-table -->", 1)[0]
    assert table == primitive_table(), "docs/ir.md is stale: regenerate it with `python -m kiln.ir.doc`"
