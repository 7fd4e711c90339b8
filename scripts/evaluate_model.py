"""Evaluate a model on a text: the book's loss and perplexity, strided for long texts; lm-eval tasks with --tasks.

    python scripts/evaluate_model.py outputs/gpt-verdict --text_file hf_gpt/resources/the-verdict.txt
    python scripts/evaluate_model.py gpt2-large --dataset_name Salesforce/wikitext --dataset_config_name wikitext-2-raw-v1 \\
        --max_length 1024 --stride 512 --output_json wikitext.json
    python scripts/evaluate_model.py model.pth --config gpt_config_124m.json --text_file notes.txt --bf16
    python scripts/evaluate_model.py outputs/gpt-verdict --tasks lambada_openai,hellaswag

MODEL is an hf_gpt folder, OpenAI GPT-2 weights (a folder whose config.json says gpt2, a Hub id, or OpenAI's
TensorFlow folder from the book's gpt_download.py, with its own tokenizer), or the book's .pth with --config. --max_length defaults to the model's context and --stride to --max_length (the book's windows,
no overlap); a smaller stride gives each token more context. Prints the results; --output_json writes them.
"""

import argparse
import json
from pathlib import Path

from hf_gpt import cli
from hf_gpt.cli import UsageError, check_device, run
from hf_gpt.writing import check_target, written_whole


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser():
    parser = _Parser(description=__doc__.split("\n")[0], allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("model", help="an hf_gpt or gpt2 folder, a GPT-2 Hub id, OpenAI's TensorFlow folder (the book's "
                                      "gpt_download.py), or the book's .pth (with --config)")
    parser.add_argument("--config", help="JSON of the book's config dict (GPT_CONFIG_124M style), for a .pth")
    data = parser.add_argument_group("data (one of)")
    data.add_argument("--text_file", help="a UTF-8 text file")
    data.add_argument("--dataset_name", help="a `datasets` dataset: a Hub id, a local folder, or one .jsonl/.json/"
                                             ".csv/.parquet file (scored whole)")
    data.add_argument("--dataset_config_name", help="the dataset's configuration, e.g. wikitext-2-raw-v1")
    data.add_argument("--split", default="test", help="default: test")
    data.add_argument("--text_column", help="default: `text`, or the only text column")
    run = parser.add_argument_group("scoring")
    run.add_argument("--max_length", type=int, help="tokens per window (default: the model's context)")
    run.add_argument("--stride", type=int, help="tokens between window starts (default: --max_length)")
    run.add_argument("--batch_size", type=int, default=4, help="windows per forward pass (default: 4)")
    run.add_argument("--bf16", action="store_true", help="bf16 autocast (default: fp32)")
    run.add_argument("--device", help="default: cuda if available, else cpu")
    run.add_argument("--no_progress", action="store_true", help="no progress bar (there is one only on a terminal)")
    run.add_argument("--cpu_reuse_freed_memory", choices=["true", "false"], default="true",
                     help="on CPU, have glibc keep freed memory for this run, so each batch's logits are not faulted "
                          "in afresh (1.5x faster scoring); also for --tasks (default: true)")
    run.add_argument("--output_json", type=Path, help="write the results here as JSON")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --output_json file")
    harness = parser.add_argument_group("lm-eval harness (pip install 'hf_gpt[eval]')")
    harness.add_argument("--tasks", help="comma-separated lm-eval task names; data options become optional")
    harness.add_argument("--include_path", help="a folder of your own lm-eval task YAML files")
    harness.add_argument("--num_fewshot", type=int)
    harness.add_argument("--limit", type=float, help="at most this many documents per task (a fraction if < 1)")
    return parser


def _format(res):
    lines = [f"tokens scored   {res['tokens']:,}", f"loss            {res['loss']:.6f} nats/token",
             f"perplexity      {res['perplexity']:.4f}", f"bits per byte   {res['bits_per_byte']:.6f}",
             f"word perplexity {res['word_perplexity']:.4f}" if res["word_perplexity"] is not None else "",
             f"({res['windows']} windows of max_length {res['max_length']}, stride {res['stride']}, "
             f"{res['precision']}, {res['tokens_per_second']:,.0f} tokens/s)"]
    return "\n".join(line for line in lines if line)


def _on_cpu(device):
    import torch

    return (device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu"


def _main(argv):
    args = build_parser().parse_args(argv)
    from hf_gpt.evaluation import evaluate, lm_eval_tasks, resolve_model

    has_data = args.text_file is not None or args.dataset_name is not None
    if not has_data and not args.tasks:
        raise UsageError("give the data to score: --text_file FILE or --dataset_name NAME (or --tasks)")
    check_device(args.device)
    if args.output_json is not None:
        check_target(args.output_json, "--output_json", overwrite=args.overwrite, kind="file")
    spec = resolve_model(args.model, args.config)
    if args.cpu_reuse_freed_memory == "true" and _on_cpu(args.device):
        from hf_gpt.training.hardware import reuse_freed_memory

        reuse_freed_memory()
    out = {}
    if has_data:
        out = evaluate(args.model, spec=spec, max_length=args.max_length, stride=args.stride,
                       batch_size=args.batch_size, bf16=args.bf16, device=args.device,
                       progress=False if args.no_progress else None, text_file=args.text_file,
                       dataset_name=args.dataset_name, dataset_config_name=args.dataset_config_name,
                       split=args.split, text_column=args.text_column)
        print(_format(out))
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
        out["lm_eval"] = lm_eval_tasks(spec, tasks, include_path=args.include_path, batch_size=args.batch_size,
                                       bf16=args.bf16, device=args.device, limit=limit, num_fewshot=args.num_fewshot)
        for task, metrics in out["lm_eval"].items():
            shown = ", ".join(f"{k.split(',')[0]} {v:.4f}" for k, v in metrics.items()
                              if isinstance(v, float) and "_stderr" not in k)
            print(f"{task}: {shown}")
    if args.output_json is not None:
        with written_whole(args.output_json) as path:
            path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv=None):
    """One `error: ...` line and exit code 2 for any failure (HF_GPT_DEBUG=1 shows the traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    cli.exit(main)
