"""Offline vLLM generation for the tests: ShapesVQA test questions, greedy, float32; prints one RESULT line."""
import json
import sys


def main() -> None:
    from vllm import LLM, SamplingParams

    from tokenprune.shapesvqa import model as M
    from tokenprune.shapesvqa.data import examples

    model_dir, n, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    proc = M.make_processor()
    exs = examples("test", n)
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=1024, max_num_seqs=8, seed=0)
    prompts = [{"prompt": M.prompt(proc, e.qa.question), "multi_modal_data": {"image": e.image()}} for e in exs]
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=max_tokens))
    print("RESULT " + json.dumps({"prompt_tokens": [len(o.prompt_token_ids) for o in outs],
                                  "tokens": [list(o.outputs[0].token_ids) for o in outs]}), flush=True)


if __name__ == "__main__":
    main()
