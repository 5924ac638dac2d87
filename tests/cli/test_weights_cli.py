"""``tokenprune prune-weights`` end to end on a saved tiny LLaVA with its offline processor."""
import json

import pytest
from transformers import AutoModelForImageTextToText

from tokenprune.cli import main
from tokenprune.testing.tiny import make_llava_processor, make_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    make_model("llava").save_pretrained(d)
    make_llava_processor().save_pretrained(d)
    return d


def test_prune_weights_cli_writes_a_stock_model(saved, tmp_path, capsys):
    out = tmp_path / "pruned"
    rc = main(["prune-weights", str(saved), str(out), "--mlp", "0.25", "--kv-groups", "1", "--blocks", "1",
               "--method", "wanda-sp", "--calib-samples", "3"])
    assert rc == 0
    model = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True)
    tc = model.config.text_config
    assert (tc.intermediate_size, tc.num_key_value_heads, tc.num_hidden_layers) == (96, 1, 3)
    plan = json.loads((out / "tokenprune_weights.json").read_text())
    assert plan["spec"]["method"] == "wanda-sp" and len(plan["removed_blocks"]) == 1
    assert (out / "tokenizer.json").is_file() and (out / "processor_config.json").is_file()
    text = capsys.readouterr().out
    assert "KV-cache values per token" in text and "max |Δlogit| = 0" in text


def test_prune_weights_cli_pipeline_config(saved, tmp_path):
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text("weights: {mlp: 0.5, method: flap, export: custom, multiple: 8}\n"
                   "stages: [{at: pre_llm, keep: 8, scorer: uniform}]\n")
    out = tmp_path / "pruned"
    assert main(["prune-weights", str(saved), str(out), "--config", str(cfg), "--calib-samples", "2"]) == 0
    from tokenprune import PruneConfig
    from tokenprune.weights import load_pruned

    model = load_pruned(out)
    assert PruneConfig.from_file(str(out / "tokenprune_config.json")).stages[0].keep == 8
    assert model.model.language_model.layers[0].mlp.up_proj.out_features % 8 == 0


@pytest.mark.parametrize("args, message", [
    (["--mlp", "1.0"], "mlp"), (["--mlp", "0.2", "--kv-groups", "2"], "kv_groups"),
    (["--hidden", "0.1"], "hidden size is never pruned"), (["--attn-layers", "1"], "custom"),
    (["--calib-samples", "0"], "calib-samples"), (["--calib-images", "/nonexistent"], "calib-images"),
])
def test_prune_weights_cli_bad_input_writes_nothing(saved, tmp_path, capsys, args, message):
    out = tmp_path / "pruned"
    assert main(["prune-weights", str(saved), str(out), "--method", "flap"] + args) == 2
    assert message in capsys.readouterr().out
    assert not out.exists()


def test_prune_weights_cli_missing_or_unsupported_model(tmp_path, capsys):
    assert main(["prune-weights", str(tmp_path / "none"), str(tmp_path / "o"), "--mlp", "0.2"]) == 2
    assert "not a saved model folder" in capsys.readouterr().out
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 vocab_size=50)).save_pretrained(d)
    assert main(["prune-weights", str(d), str(tmp_path / "o"), "--mlp", "0.2"]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, text, message", [
    ("missing.yaml", None, "--config (config): cannot read"),
    ("bad.yaml", "weights: {mlp: [0.2\n", "is not valid YAML"),
    ("bad.json", "{weights:", "is not valid JSON"),
    ("types.yaml", "weights: {mlp: 0.2, blocks: 1.5}\n", "blocks: got 1.5; allowed: an int"),
    ("types2.yaml", "weights: {mlp: high}\n", "mlp: got 'high'; allowed: a number"),
    ("list.yaml", "weights: [1, 2]\n", "weights: expected a mapping"),
])
def test_prune_weights_bad_config_files(saved, tmp_path, capsys, name, text, message):
    """Config problems end in one clear line and exit 2, before calibration, writing nothing."""
    cfg = tmp_path / name
    if text is not None:
        cfg.write_text(text)
    out = tmp_path / "pruned"
    assert main(["prune-weights", str(saved), str(out), "--config", str(cfg)]) == 2
    assert message in capsys.readouterr().out
    assert not out.exists()


def test_prune_weights_truncated_weights(saved, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    w = broken / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    assert main(["prune-weights", str(broken), str(tmp_path / "o"), "--mlp", "0.2"]) == 2
    assert "model: cannot load" in capsys.readouterr().out
