"""evals/side_by_side.py: Kendall's tau on known rankings and budget pairing of two eval files."""
import json

from evals.side_by_side import compare, kendall_tau


def test_kendall_tau_known_values():
    a = {"x": 3, "y": 2, "z": 1}
    assert kendall_tau(a, a) == 1.0
    assert kendall_tau(a, {"x": 1, "y": 2, "z": 3}) == -1.0
    assert abs(kendall_tau(a, {"x": 3, "y": 1, "z": 2}) - 1 / 3) < 1e-12  # 2 concordant pairs, 1 discordant


def test_pairs_budgets_and_lists_missing_presets(tmp_path):
    def write(name, keep, accs):
        rows = [{"preset": p, "keep": keep, "accuracy": v, "retention": v / 0.9, "global": v, "localized": v}
                for p, v in accs.items()]
        path = tmp_path / name
        path.write_text(json.dumps({"dense": {"accuracy": 0.9, "global": 0.9, "localized": 0.9}, "rows": rows}))
        return str(path)

    a = write("a.json", 144, {"p": 0.8, "q": 0.7, "r": 0.6})
    b = write("b.json", 0.25, {"p": 0.5, "q": 0.6, "s": 0.4})
    res = compare(a, b, [("144", "0.25")])
    rank = res["ranking"][0]
    assert rank["common_presets"] == 2 and rank["kendall_tau"] == -1.0
    assert rank["top3_first"] == ["p", "q", "r"] and rank["top3_second"] == ["q", "p", "s"]
    missing = {r["preset"]: (r["first"], r["second"]) for r in res["table"]}
    assert missing["r"][1] is None and missing["s"][0] is None
