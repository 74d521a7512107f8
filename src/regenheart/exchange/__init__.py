"""Exchange formats: trial data in (templates, REDCap, CDISC ODM) and out (REDCap, ODM, ...).

Sits above capture and beside report. Every reader turns a source into the neutral
:class:`regenheart.exchange.records.SourceData`; :mod:`regenheart.exchange.importer` writes it
through the capture service (the same checks and audit trail as typed data). Writers read a
study database (through the store's snapshot) and the protocol.
"""
