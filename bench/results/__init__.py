"""From run folders to results: `collect` (a results tree -> one long frame), `tables` and `table_render`
(paper-style tables), `compare` with `power` (verdicts against a baseline and their statistics), `plots`
and `report` (everything `dmlbench collect` writes)."""
