"""RESULTS.md's tables are what the raw results say: each is regenerated from the JSON beside it
(``benchmarks/results_tables.py``) and compared, so a hand-edited or stale figure fails CI."""

import shutil

import pytest
from reasoning.benchmarks import results_tables

pytestmark = pytest.mark.skipif(not results_tables.RESULTS_MD.is_file(), reason="raw results ship only in a checkout")


def test_every_table_in_results_md_matches_the_data(capsys):
    assert results_tables.main(["--check"]) == 0, capsys.readouterr().out
    text = results_tables.RESULTS_MD.read_text()
    assert set(results_tables.MARKER.findall(text)) and \
        {m["name"] for m in results_tables.MARKER.finditer(text)} == set(results_tables.TABLES)


def test_a_hand_edited_figure_is_caught_and_write_restores_it(tmp_path, capsys):
    copy = tmp_path / "RESULTS.md"
    shutil.copy(results_tables.RESULTS_MD, copy)
    text = copy.read_text()
    table = results_tables.MARKER.search(text)
    body = table["body"]
    digit = next(i for i, ch in enumerate(body) if ch.isdigit() and i > body.index("\n|---"))
    edited = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1:]
    copy.write_text(text.replace(body, edited, 1))
    assert results_tables.main([str(copy), "--check"]) == 1
    assert "generated" in capsys.readouterr().out  # the diff says what the data gives
    assert results_tables.main([str(copy), "--write"]) == 0
    assert copy.read_text() == text


def test_a_table_inside_a_list_item_keeps_its_indentation(tmp_path):
    nested = tmp_path / "RESULTS.md"
    nested.write_text("- a run:\n\n  <!-- table: genrm-vs-sc:cpu -->\n  stale\n  <!-- /table -->\n\n  more prose\n")
    assert results_tables.main([str(nested), "--write"]) == 0
    lines = nested.read_text().splitlines()
    table = lines[lines.index("  <!-- table: genrm-vs-sc:cpu -->") + 1:lines.index("  <!-- /table -->")]
    assert table[0].startswith("  | budget B | SC n=4 |") and all(line.startswith("  |") for line in table)
    assert results_tables.main([str(nested), "--check"]) == 0


def test_an_unknown_table_name_is_an_error(tmp_path):
    bad = tmp_path / "RESULTS.md"
    bad.write_text("<!-- table: no-such-table -->\n<!-- /table -->\n")
    with pytest.raises(KeyError, match="no-such-table"):
        results_tables.main([str(bad), "--check"])


def test_the_accounting_change_table_re_derives_direct_run_costs_from_the_first_runs_rows():
    text = results_tables.accounting_change(results_tables.RESULTS)
    rows = [line.split(" | ") for line in text.splitlines()[2:]]
    by_n = {(r[0].strip("| "), r[1]): r for r in rows}
    # The first run published 299 tokens and 0.016 calls for SC n=1 on GSM8K; at n=64 (the whole
    # pool) both accountings agree.
    assert by_n[("GSM8K-200", "n=1")][2:4] == ["299", "0.016"]
    assert by_n[("GSM8K-200", "n=64")][2] == by_n[("GSM8K-200", "n=64")][4]
    assert int(by_n[("GSM8K-200", "n=1")][4].replace(",", "")) > 299


def test_the_latency_table_takes_atts_and_cascade_from_the_roles_call(tmp_path):
    """Issue 19: call 1 has no roles, so atts and cascade get their figures from call 2, each
    labelled as measured against call 2's own SC; without call 2 they stay without a figure."""
    build = results_tables.TABLES["latency-all:h200"]

    def rows(text):
        return {r[0].strip("| "): r for r in (line.split(" | ") for line in text.splitlines() if line.startswith("| "))}

    both = rows(build(results_tables.RESULTS))
    for label in ("atts n=8", "cascade n=8"):
        assert both[label][1] == "10" and "call 2's SC" in both[label][-1]
    assert "call 2's baseline" in both["self-consistency n=8 (call 2)"][-1]
    labels = list(both)
    assert labels.index("self-consistency n=8 (call 2)") == labels.index("self-consistency n=8") + 1

    shutil.copy(results_tables.RESULTS / "latency_all_h200.json", tmp_path)  # call 1 alone
    alone = build(tmp_path)
    assert "no run stored yet" in alone and rows(alone)["atts n=8"][1] == "0"


def test_the_deepconf_rounds_table_pairs_each_rounds_walls_and_averages_its_rows():
    text = results_tables.TABLES["deepconf-rounds:gsm8k100-walltime"](results_tables.RESULTS)
    rows = [line.strip("| ").split(" | ") for line in text.splitlines()[2:] if line.startswith("| ")]
    assert [r[1] for r in rows] == ["pool", "online-10", "pool", "online-10"]  # ABBA
    for row in rows:
        pool, online = (float(x) for x in row[2].split(" / "))
        assert float(row[3]) == pytest.approx(online / pool, abs=1e-3)
        pool, online = (float(x) for x in row[4].split(" / "))
        assert float(row[5]) == pytest.approx(online / pool, abs=2e-3)
    accuracies = [[float(x) for x in r[8].split(" / ")] for r in rows]
    sc, replay, online = (sum(a[i] for a in accuracies) / len(accuracies) for i in range(3))
    assert f"self-consistency {sc:.4f}" in text and f"replay-10 {replay:.4f}" in text
    assert f"online-10 (engine) {online:.4f}" in text
    ratios = [float(r[3]) for r in rows]
    assert f"per round {min(ratios):.3f}–{max(ratios):.3f}" in text
    assert f"mean {sum(ratios) / len(ratios):.3f}" in text
