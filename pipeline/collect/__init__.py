"""``modelmeter collect``: usage records other tools already write, turned into ``llm_call``
events of the contract and sent through the SDK (docs/sources.md).

Modules: :mod:`~pipeline.collect.sources` (the mapping file ``schemas/sources.yaml``:
providers by model-name prefix, role hints), :mod:`~pipeline.collect.claude_code` (Claude
Code transcript lines -> distinct calls, the counting rules), :mod:`~pipeline.collect.tree`
(reading a tree of transcripts from per-file checkpoints),
:mod:`~pipeline.collect.checkpoint` (the checkpoint file) and :mod:`~pipeline.collect.cli`
(``collect claude-code``: backfill, ``--follow``, progress and summary).
"""
