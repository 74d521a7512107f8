"""Questionnaire forms in the protocol match the scoring library: same item keys, same codes,
and every derived endpoint names a score the instrument produces."""

from __future__ import annotations

import pytest

from regenheart import instruments


@pytest.mark.parametrize("form_code", ["kccq", "sf12", "mlhfq"])
def test_form_items_match_instrument(protocol, form_code):
    form = protocol.forms[form_code]
    spec = instruments.INSTRUMENTS[form.instrument]
    expected = {item.key: tuple(item.codes) for item in spec.items}
    actual = {f.name: tuple(protocol.allowed_codes(f)) for f in form.fields}
    assert actual == expected


def test_derived_endpoints_name_real_scores(protocol):
    for parameter in protocol.all_parameters:
        if parameter.derived:
            instrument = protocol.forms[parameter.form].instrument
            names = {s.name for s in instruments.INSTRUMENTS[instrument].scores}
            assert parameter.item in names, parameter.paramcd
