"""Pictures and reports for people: `draw` (a fusion plan as dot / SVG / PNG, each kernel a
labelled box) and `html` (a `KILN_DUMP` directory as one self-contained HTML page)."""
