"""Paper tables reproduced from configs: ``python scripts/reproduce.py table=<name>`` (or ``table=all``).

One module per table (``build(cfg, out_dir) -> TableResult``); :func:`reproduce` runs the selected table(s),
writes ``table.md`` / ``table.csv`` / ``table.png`` per table, prints the markdown and, for ``table=all``,
regenerates ``RESULTS.md`` at the repository root.
"""

from paper_tables.common import Column, TableResult, markdown, write_table
from paper_tables.runner import TABLES, reproduce, run_table

__all__ = ["TABLES", "Column", "TableResult", "markdown", "reproduce", "run_table", "write_table"]
