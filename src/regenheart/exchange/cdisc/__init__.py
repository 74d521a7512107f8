"""CDISC submission writers and checks at the edge: SAS XPT v5, Dataset-JSON 1.1, Define-XML 2.1 (+ HTML),
conformance checks and the submission package. They read only :class:`regenheart.derive.datasets.Dataset`
metadata and records, so they work for any study."""
