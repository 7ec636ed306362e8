"""The .rpl parser on every real layout, every key spelling, and bad headers."""

from __future__ import annotations

import pytest

from maxrf import MaxrfError, read_rpl
from maxrf.errors import HeaderError, ScanNotFoundError

LAYOUT_A = (
    "key        \t value\r\nwidth      \t 1592\r\nheight     \t 1692\r\ndepth      \t 4096\r\n"
    "offset     \t 0\r\ndata-Length\t 2\r\ndata-type  \t unsigned\r\n"
    "byte-order \t little-endian\r\nrecord-by  \t vector\r\n"
)
LAYOUT_B = LAYOUT_A + (
    "depthbinsize             1\r\ndepth1                  200\r\ndepth2                 3000\r\n"
    "depthscaleorigin          -0.956\r\ndepthscaleincrement    0.010002\r\n"
    "depthscaleunits         keV\r\n"
)


def write(tmp_path, text, name="h.rpl"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_bruker_layout_a(tmp_path):
    h = read_rpl(write(tmp_path, LAYOUT_A))
    assert (h.width, h.height, h.depth, h.offset) == (1592, 1692, 4096, 0)
    assert h.dtype.str == "<u2" and h.record_by == "vector" and h.energy is None
    assert h.shape == (1692, 1592, 4096)
    assert h.raw_bytes_expected == 1592 * 1692 * 4096 * 2


def test_bruker_layout_b_calibration(tmp_path):
    h = read_rpl(write(tmp_path, LAYOUT_B))
    assert h.energy.offset_kev == pytest.approx(-0.956)
    assert h.energy.gain_kev == pytest.approx(0.010002)
    assert h.raw["depth1"] == "200" and h.raw["depthbinsize"] == "1"


def test_bruker_layout_b_in_ev(tmp_path):
    text = LAYOUT_B.replace("-0.956", "-956").replace("0.010002", "10.002")
    h = read_rpl(write(tmp_path, text.replace("keV", "eV")))
    assert h.energy.offset_kev == pytest.approx(-0.956)
    assert h.energy.gain_kev == pytest.approx(0.010002)


def test_lispix_hyperspy_keys_comments_and_case(tmp_path):
    text = (
        "; written by hand\nKEY\tVALUE\nWidth\t3\nHEIGHT\t2\ndepth\t5 ; channels\n"
        "Offset\t8\ndata-length\t4\nData-Type\tFLOAT\nbyte-order\tBig-Endian\n"
        "record-by\tImage\ndepth-scale\t20\ndepth-origin\t-100\ndepth-units\teV\n"
        "signal\tEDS_SEM\nbeam-energy\t20\n"
    )
    h = read_rpl(write(tmp_path, text))
    assert h.dtype.str == ">f4" and h.record_by == "image" and h.offset == 8
    assert h.energy.gain_kev == pytest.approx(0.02) and h.energy.offset_kev == pytest.approx(-0.1)
    assert h.raw["signal"] == "EDS_SEM"


def test_ev_per_chan_and_dont_care(tmp_path):
    text = "width\t4\nheight\t3\ndepth\t1\ndata-length\t1\ndata-type\tsigned\n"
    text += "byte-order\tdont-care\nrecord-by\tdont-care\nev-per-chan\t10\n"
    h = read_rpl(write(tmp_path, text))
    assert h.dtype.str == "|i1" and h.record_by == "dont-care"
    assert h.energy.gain_kev == pytest.approx(0.01) and h.energy.offset_kev == 0
    assert h.offset == 0  # missing offset means 0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("width      \t 1592\r\n", ""), "missing required key(s): width"),
        (lambda t: t.replace("1692", "abc"), "'height' must be a whole number"),
        (lambda t: t.replace("1692", "0"), "'height' must be at least 1"),
        (lambda t: t.replace("1692", "-3"), "'height' must be at least 1"),
        (lambda t: t.replace("1692", "12.5"), "'height' must be a whole number"),
        (lambda t: t.replace("unsigned", "complex"), "unknown data-type 'complex'"),
        (lambda t: t.replace("little-endian", "middle-endian"), "unknown byte-order"),
        (lambda t: t.replace("vector", "pixel"), "unknown record-by 'pixel'"),
        (lambda t: t.replace("data-Length\t 2", "data-Length\t 3"), "data-length 3 is not valid"),
        (
            lambda t: t.replace("unsigned", "float"),
            "data-length 2 is not valid for data-type float",
        ),
        (lambda t: t.replace("offset     \t 0", "offset     \t -1"), "'offset' must be at least 0"),
        (lambda t: t.replace("vector", "dont-care"), "dont-care means a 2-D image"),
        (lambda t: t + "depthscaleincrement    abc\r\n", "'depthscaleincrement' must be a number"),
        (lambda t: t + "depth-scale\t0\r\n", "'depth-scale' must be positive"),
        (lambda t: "", "empty header"),
        (lambda t: "\x00\x01\x02binary", "binary file"),
    ],
)
def test_bad_headers_name_the_problem(tmp_path, edit, message):
    path = write(tmp_path, edit(LAYOUT_A))
    with pytest.raises(HeaderError) as err:
        read_rpl(path)
    assert message in str(err.value)
    assert str(err.value).startswith(str(path))
    assert isinstance(err.value, MaxrfError)


def test_underscored_keys_and_utf16(tmp_path):
    text = LAYOUT_A.replace("data-Length", "data_length").replace("record-by  ", "Record By  ")
    h = read_rpl(write(tmp_path, text))
    assert h.data_length == 2 and h.record_by == "vector"
    h16 = read_rpl(write(tmp_path, LAYOUT_B.encode("utf-16"), "u16.rpl"))
    assert h16.energy.gain_kev == pytest.approx(0.010002) and h16.width == 1592


def test_missing_header_file(tmp_path):
    with pytest.raises(ScanNotFoundError, match="header file not found"):
        read_rpl(tmp_path / "nope.rpl")


def test_extra_tab_fields_after_a_value_are_ignored(tmp_path):
    """The Ripple spec allows fields after a value (``width<TAB>3<TAB>note``)."""
    text = ("key\tvalue\nwidth\t3\tpixels across\nheight\t2\t\tnote\ndepth\t4\noffset\t0\n"
            "data-length\t2\ndata-type\tunsigned\tcounts\nbyte-order\tlittle-endian\n"
            "record-by\tvector\tone spectrum per pixel\n")
    (tmp_path / "t.rpl").write_text(text)
    h = read_rpl(tmp_path / "t.rpl")
    assert (h.width, h.height, h.depth, h.data_type, h.record_by) == (3, 2, 4, "unsigned",
                                                                      "vector")


def test_a_depth_axis_that_is_not_energy_is_described_and_refused(tmp_path):
    import json

    from helpers import run_maxrf

    text = ("width\t4\nheight\t3\ndepth\t5\noffset\t0\ndata-length\t2\ndata-type\tunsigned\n"
            "byte-order\tlittle-endian\nrecord-by\tvector\ndepth-scale\t0.000002\n"
            "depth-origin\t0.001\ndepth-units\tm\n")
    (tmp_path / "z.rpl").write_text(text)
    (tmp_path / "z.raw").write_bytes(bytes(4 * 3 * 5 * 2))
    h = read_rpl(tmp_path / "z.rpl")
    assert h.energy is None and h.depth_axis["units"] == "m"
    assert h.depth_axis["scale"] == 2e-6
    info = run_maxrf("info", tmp_path / "z.rpl")
    assert info.returncode == 0 and "not energy" in info.stdout and " m per channel" in info.stdout
    as_json = json.loads(run_maxrf("info", tmp_path / "z.rpl", "--json").stdout)
    assert as_json["depth_axis"]["units"] == "m"
    r = run_maxrf("convert", tmp_path / "z.raw", env={"MAXRF_SERVER": "temporary"})
    assert r.returncode == 2 and "the depth axis is not energy (units m)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "z.datastack").exists()
