"""The one YAML writer reads back as the same values (PyYAML, YAML 1.1)."""

import yaml

from builder.yamlout import emit, scalar


def test_values_read_back_as_written():
    data = {"none": None, "float": 198.3, "tiny": 1e-05, "huge": 1e20, "neg": -3.5e-7, "empty_list": [],
            "empty_map": {}, "words": ["yes", "no", "on"], "version": "0.20", "colon": "x: y",
            "nested": [{"g": 1, "h": [1, "no", None, 2.0]}],
            "image": "127.0.0.1:5000/r@sha256:" + "0" * 64, "int": 8000, "bool": True}
    assert yaml.safe_load("\n".join(emit(data, 0)) + "\n") == data
    assert [scalar(v) for v in (None, 1e-05, 2.0, float("inf"))] == ["null", "1.0e-05", "2.0", ".inf"]
