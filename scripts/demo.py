"""A page in the browser to try a model folder: type a prompt, pick greedy or sampled decoding, watch the text stream.

    pip install -e ".[demo]"
    python scripts/demo.py outputs/pretrain                 # then open http://127.0.0.1:7860
    python scripts/demo.py outputs/gpt2-export --port 8000  # a stock GPT-2 folder works too

The page also shows what the folder knows: size, context length, its card's validation loss and perplexity, and
`loss.png`. Greedy text is what `scripts/generate.py FOLDER PROMPT --greedy` prints (the prompt and its continuation).
"""

import argparse
import os
import socket
import threading
import time
from pathlib import Path

from hf_gpt import cli
from hf_gpt.cli import UsageError, add_debug_flag, run

GREEDY, SAMPLE = "greedy", "sample"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("folder", help="a folder written by save_pretrained / scripts/pretrain.py")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves every network the machine is on")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1-65535, got {args.port}")
    return args


def check_port(host, port):
    """Refuse a port another server holds now, with the same bind the web server will do (SO_REUSEADDR, as uvicorn)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as err:
        raise UsageError(f"cannot serve on {host}: {err.strerror}") from None
    except OSError as err:
        raise UsageError(f"port {port} on {host} is in use ({err.strerror}): stop what holds it, or pick another "
                         f"with --port") from None


def facts(folder, model):
    """What the folder knows, as Markdown."""
    from hf_gpt.cards import read_eval_results

    config, results = model.config, read_eval_results(folder)
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", "?")
    rows = [("Model", f"{config.model_type} ({type(model).__name__})"), ("Parameters", f"{model.num_parameters():,}"),
            ("Context length", f"{context} tokens")]
    if "eval_loss" in results:
        on = f" on {results['dataset']}" if results.get("dataset") else ""
        rows += [("Validation loss", f"{results['eval_loss']:.4f}{on}"), ("Perplexity", f"{results['perplexity']:.2f}")]
    else:
        rows.append(("Validation loss", "not recorded (no model-index in README.md, no eval_results.json)"))
    return "\n".join([f"### {folder.resolve().name}", "", *(f"- **{k}**: {v}" for k, v in rows)])


def stream(model, tokenizer, device, prompt, max_new_tokens, mode, temperature, top_k, top_p, seed):
    """Yields (prompt and text so far, status line) as `generate` streams, token by token, in a thread."""
    import torch
    from transformers import TextIteratorStreamer, set_seed

    from hf_gpt.generation import generation_kwargs, prompt_inputs

    sampled = mode == SAMPLE
    kwargs = generation_kwargs(model, max_new_tokens=int(max_new_tokens), greedy=not sampled, do_sample=sampled,
                               **({"temperature": temperature, "top_k": int(top_k), "top_p": top_p} if sampled else {}))
    inputs = prompt_inputs(tokenizer, prompt, device)
    set_seed(int(seed))
    streamer = TextIteratorStreamer(tokenizer, skip_special_tokens=True)  # the prompt first, as generate.py prints
    new_tokens, failure, start = [], [], time.perf_counter()

    def work():
        try:
            with torch.no_grad():
                new_tokens.append(model.generate(**inputs, **kwargs, streamer=streamer).shape[1]
                                  - inputs["input_ids"].shape[1])
        except Exception as err:  # raised below; the streamer must still end
            failure.append(err)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text, "Generating…"
    thread.join()
    if failure:
        raise failure[0]
    n, seconds = new_tokens[0], time.perf_counter() - start
    yield text, f"Done: {n} new tokens in {seconds:.1f} s ({n / seconds:.1f} tokens/s)."


def build(gr, folder, model, tokenizer, device):
    def generate(*values):
        try:
            yield from stream(model, tokenizer, device, *values)
        except Exception as err:  # on the page, not as a traceback in the terminal
            raise gr.Error(str(err) if isinstance(err, UsageError) else f"{type(err).__name__}: {err}") from None

    defaults = model.generation_config
    with gr.Blocks(title=f"hf_gpt: {folder.resolve().name}", analytics_enabled=False) as page:
        gr.Markdown(f"## hf_gpt demo: `{folder.resolve()}`")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", value="Every effort moves you", lines=3, elem_id="prompt")
                with gr.Row():
                    mode = gr.Radio([GREEDY, SAMPLE], value=SAMPLE if defaults.do_sample else GREEDY,
                                    label="Decoding", elem_id="mode")
                    max_new = gr.Slider(1, 1024, value=defaults.max_new_tokens or 50, step=1,
                                        label="Max new tokens", elem_id="max_new_tokens")
                with gr.Row():
                    temperature = gr.Slider(0.05, 2.0, value=defaults.temperature or 1.0, step=0.05,
                                            label="Temperature (sample)")
                    top_k = gr.Number(value=defaults.top_k or 0, precision=0, minimum=0, label="Top-k (sample; 0: off)")
                    top_p = gr.Slider(0.05, 1.0, value=defaults.top_p or 1.0, step=0.05, label="Top-p (sample)")
                    seed = gr.Number(value=123, precision=0, label="Seed (same seed, same text)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                output = gr.Textbox(label="Prompt and continuation", lines=10, interactive=False, elem_id="output")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                gr.Markdown(facts(folder, model), elem_id="facts")
                if (folder / "loss.png").is_file():
                    gr.Image(str(folder / "loss.png"), label="loss.png", interactive=False, elem_id="loss_plot")
        button.click(generate, [prompt, max_new, mode, temperature, top_k, top_p, seed], [output, status])
    return page


def _main(argv=None):
    args = parse_args(argv)
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise UsageError(f"no such folder: {folder}")
    from hf_gpt.generation import load
    from hf_gpt.hub import check_model_folder

    try:
        check_model_folder(folder)
    except UsageError as err:
        raise UsageError(str(err)) from None
    check_port(args.host, args.port)
    try:
        import gradio as gr
    except ImportError:
        raise UsageError('the demo page needs gradio: pip install -e ".[demo]"') from None
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load(folder)
    model.to(device).eval()
    # gradio checks its own URL with httpx, which goes through http(s)_proxy unless told not to (gradio-app/gradio#4046)
    bypass = [os.environ.get("no_proxy") or os.environ.get("NO_PROXY"), "localhost", "127.0.0.1", "::1", args.host]
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = ",".join(dict.fromkeys(h for h in bypass if h))
    build(gr, folder, model, tokenizer, device).queue().launch(server_name=args.host, server_port=args.port)
    return 0


def main(argv=None):
    """One `error: ...` line and exit code 2 for bad input, before any server starts (--debug: the traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    cli.exit(main)
