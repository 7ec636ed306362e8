"""Exports of a datastack's data into other tools' formats (maps as figures: ``maxrf.figures``)."""
