"""Template expansion: $data, $when, $index, $root, $host, arrays, errors with locations, limits, no mutation.

Expected values are Microsoft's (test_differential.py compares them with the real engine).
"""

from __future__ import annotations

import copy
import json

import pytest

from cards import CardsError, TemplateError, expand


def test_types_are_kept_for_a_whole_binding_and_strings_otherwise() -> None:
    data = {"n": 5, "b": True, "o": {"k": [1]}, "s": "x", "z": None}
    out = expand({"n": "${n}", "b": "${b}", "o": "${o}", "z": "${z}", "s": "n=${n} b=${b}"}, data)
    assert out == {"n": 5, "b": True, "o": {"k": [1]}, "z": None, "s": "n=5 b=true"}


def test_repeat_over_array_with_index_and_root() -> None:
    template = {"body": [{"type": "TextBlock", "$data": "${lines}", "text": "${$index}: ${name} (${$root.po})"}]}
    out = expand(template, {"po": "PO-1", "lines": [{"name": "a"}, {"name": "b"}]})
    assert out == {"body": [{"type": "TextBlock", "text": "0: a (PO-1)"}, {"type": "TextBlock", "text": "1: b (PO-1)"}]}


def test_empty_array_drops_the_element_and_object_rebinds_scope() -> None:
    template = {"body": [{"$data": "${none}", "t": "x"}, {"$data": "${obj}", "t": "${v}"}]}
    assert expand(template, {"none": [], "obj": {"v": 3}}) == {"body": [{"t": 3}]}


def test_nested_repeats_have_their_own_index() -> None:
    template = {"rows": [{"$data": "${groups}", "g": "${$index}",
                          "cells": [{"$data": "${items}", "t": "${$index}/${name}"}]}]}
    data = {"groups": [{"items": [{"name": "p"}, {"name": "q"}]}, {"items": [{"name": "r"}]}]}
    assert expand(template, data) == {"rows": [
        {"g": 0, "cells": [{"t": "0/p"}, {"t": "1/q"}]},
        {"g": 1, "cells": [{"t": "0/r"}]},
    ]}
    # as a property value (not in an array) a one-item repeat is the object itself, two items a list
    assert expand({"p": {"$data": "${x}", "v": "${$data}"}}, {"x": [1]}) == {"p": {"v": 1}}
    assert expand({"p": {"$data": "${x}", "v": "${$data}"}}, {"x": [1, 2]}) == {"p": [{"v": 1}, {"v": 2}]}


def test_data_over_strings_and_the_root() -> None:
    assert (expand({"a": [{"$data": "${tags}", "v": "${$data}"}]}, {"tags": ["x", "y"]})
            == {"a": [{"v": "x"}, {"v": "y"}]})
    assert expand({"$data": "${items}", "v": "${v}"}, {"items": [{"v": 1}, {"v": 2}]}) == [{"v": 1}, {"v": 2}]


def test_when_drops_elements_and_properties() -> None:
    template = {"body": [{"$when": "${x > 1}", "t": 1}, {"$when": "${x > 5}", "t": 2}],
                "prop": {"$when": "${false}", "t": 3}}
    assert expand(template, {"x": 3}) == {"body": [{"t": 1}], "prop": None}
    assert expand({"$when": "${false}", "t": 1}, {}) is None
    # anything but a true boolean is false; a literal (non-binding) truthy value drops the element
    assert (expand([{"$when": "${'true'}"}, {"$when": "${1}"}, {"$when": True}, {"$when": False, "k": 1}], {})
            == [{"k": 1}])


def test_when_is_evaluated_per_repeated_item() -> None:
    template = [{"$data": "${items}", "$when": "${v > 1}", "v": "${v}"}]
    assert expand(template, {"items": [{"v": 1}, {"v": 2}, {"v": 3}]}) == [{"v": 2}, {"v": 3}]


def test_arrays_drop_nulls_and_splice_arrays() -> None:
    assert expand([None, 1, [2, 3], "${a}", "${b}", []], {"a": [4, 5], "b": None}) == [1, 2, 3, 4, 5]


def test_reserved_keys_never_reach_the_output() -> None:
    out = expand({"$root": 1, "$index": 2, "$host": 3, "$_acTemplateVersion": 4,
                  "k": "${$_acTemplateVersion.major}"}, {})
    assert out == {"k": 2}


def test_host_and_escape_and_missing() -> None:
    assert expand({"h": "${$host.theme}", "e": "\\${x}", "m": "${nope}"}, {}, host={"theme": "dark"}) == \
        {"h": "dark", "e": "${x}", "m": "${nope}"}
    assert expand({"h": "${$host}"}, {}) == {"h": "${$host}"}


def test_json_text_template_and_no_mutation() -> None:
    template = {"body": [{"$data": "${items}", "t": "${v}", "o": "${o}"}]}
    data = {"items": [{"v": 1, "o": {"k": [1]}}]}
    before_t, before_d = copy.deepcopy(template), copy.deepcopy(data)
    out = expand(template, data)
    assert template == before_t and data == before_d
    out["body"][0]["o"]["k"].append(2)          # the card never aliases the data
    assert data == before_d
    assert expand(json.dumps(template), data) == {"body": [{"t": 1, "o": {"k": [1]}}]}


def test_errors_name_template_path_and_expression() -> None:
    template = {"body": [{"t": "ok"}, {"t": "ok"}, {"items": [{"text": "Total ${formatNumber(x, }"}]}]}
    with pytest.raises(TemplateError) as info:
        expand(template, {}, name="po-confirmed")
    err = info.value
    assert isinstance(err, CardsError)
    assert (err.template, err.path, err.expression) == ("po-confirmed", "$.body[2].items[0].text",
                                                        "Total ${formatNumber(x, }")
    assert "po-confirmed" in str(err) and "$.body[2].items[0].text" in str(err)


def test_syntax_error_in_a_dropped_element_still_fails() -> None:
    """Microsoft parses the whole template before expanding it; so do we."""
    with pytest.raises(TemplateError, match=r"\$\.a\.t"):
        expand({"a": {"$when": "${false}", "t": "${(}"}}, {})


def test_runtime_error_in_a_whole_binding_names_the_expression() -> None:
    with pytest.raises(TemplateError) as info:
        expand({"b": [{"$data": "${lines}", "t": "${substring(n, 5)}"}]}, {"lines": [{"n": "ab"}]})
    assert info.value.path == "$.b[0].t"
    assert info.value.expression == "substring(n, 5)"


def test_not_json_text() -> None:
    with pytest.raises(TemplateError, match="not JSON"):
        expand("{nope", {}, name="t")


def test_deep_templates_fail_closed() -> None:
    deep: object = "${x}"
    for _ in range(200):
        deep = {"a": deep}
    with pytest.raises(TemplateError, match="nested deeper"):
        expand(deep, {"x": 1})
    deep_list: object = 1
    for _ in range(5000):
        deep_list = [deep_list]
    with pytest.raises(TemplateError):
        expand(deep_list, {})


def test_deep_expressions_fail_closed() -> None:
    with pytest.raises(TemplateError, match="deeply"):
        expand({"v": "${" + "(" * 500 + "1" + ")" * 500 + "}"}, {})
    with pytest.raises(TemplateError, match="deeply|long"):
        expand({"v": "${" + "-" * 5000 + "1}"}, {})


def test_repeats_that_explode_fail_closed() -> None:
    rows = list(range(1000))
    template = {"a": [{"$data": "${rows}",
                       "b": [{"$data": "${$root.rows}", "c": [{"$data": "${$root.rows}", "v": 1}]}]}]}
    with pytest.raises(TemplateError, match="more than"):
        expand(template, {"rows": rows})


def test_huge_templates_fail_closed() -> None:
    with pytest.raises(TemplateError, match="more than"):
        expand({"a": list(range(60_000))}, {})


def test_deep_data_does_not_escape_as_recursion_error() -> None:
    deep: object = 1
    for _ in range(3000):
        deep = {"k": deep}
    with pytest.raises(TemplateError):
        expand({"s": "${string(d)}"}, {"d": deep})


def test_non_json_data_inside_a_string_is_refused_clearly() -> None:
    from decimal import Decimal

    with pytest.raises(TemplateError, match="Decimal is not a JSON value"):
        expand({"t": "a ${x}"}, {"x": Decimal("1.5")})
