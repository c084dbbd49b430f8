"""The shared vocabulary of Meltemi: catalogue, registry, reading models, QC, derived quantities.

It imports pydantic and numpy only, never ``ingest``, ``api`` or ``firmware_sim``.
"""
