"""A saved folder is a complete Hub repository: loads where hf_gpt is absent, carries a card with the run's numbers,
exports to stock GPT-2, and pushes exactly its files (to a stand-in for the Hub's upload endpoints)."""

import base64
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, constants

import hf_gpt
from hf_gpt import hub
from hf_gpt.hub import export_folder

REPO = Path(__file__).resolve().parents[1]
TOKEN = "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0123"
PROMPT = "Every effort moves you"
EVAL = {"eval_loss": 6.25, "perplexity": 518.01, "epoch": 10.0}
TRAIN = {"train_loss": 4.125, "train_runtime": 12.5, "epoch": 10.0}
HF_GPT_FILES = [
    "README.md", "config.json", "configuration_gpt.py", "conversion_gpt.py", "generation_config.json", "loss.png",
    "model.safetensors", "modeling_gpt.py", "tokenizer.json", "tokenizer_config.json", "weight_files_gpt.py",
]
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = hf_gpt.GPTConfig(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=2,
                              drop_rate=0.0, tie_word_embeddings=True)
    return hf_gpt.GPTForCausalLM(config).eval()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return hf_gpt.load_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, model, tokenizer):
    from transformers import TrainingArguments

    out = tmp_path_factory.mktemp("run") / "gpt-verdict"
    out.mkdir()
    (out / "loss.png").write_bytes(PNG_1X1)
    args = TrainingArguments(output_dir=str(out), learning_rate=4e-4, weight_decay=0.1, num_train_epochs=10,
                             per_device_train_batch_size=2, gradient_accumulation_steps=4, seed=123,
                             hub_token=TOKEN, report_to="none")
    hub.save_for_hub(model, tokenizer, out, eval_results=EVAL, train_results=TRAIN, training_args=args,
                     dataset_name="the-verdict.txt")
    return out


def files_of(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def greedy_ids(model, tokenizer, max_new_tokens):
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return model.generate(ids, do_sample=False, max_new_tokens=max_new_tokens)[0].tolist()


# ------------------------------------------------------------------------------------------------ saved folder


def test_saved_folder_holds_every_file_a_hub_repo_needs(folder):
    assert files_of(folder) == HF_GPT_FILES
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_gpt.GPTConfig", "AutoModel": "modeling_gpt.GPTModel",
                                  "AutoModelForCausalLM": "modeling_gpt.GPTForCausalLM"}
    assert config["model_type"] == "hf_gpt"
    hub.check_model_folder(folder, need_card=True)


def test_saved_generation_config_samples_while_the_model_in_code_stays_greedy(folder, model):
    generation = json.loads((folder / "generation_config.json").read_text())
    assert {k: generation[k] for k in ("do_sample", "top_p", "top_k", "temperature", "max_new_tokens")} == {
        "do_sample": True, "top_p": 0.9, "top_k": 0, "temperature": 1.0, "max_new_tokens": 100}
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (50256, 50256, 50256)
    assert model.generation_config.do_sample is not True
    assert tiny_model().generation_config.do_sample is not True


def test_model_card_parses_and_its_model_index_holds_the_run_numbers(folder, model):
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert (data.license, data.library_name, data.pipeline_tag, data.language) == (
        "apache-2.0", "transformers", "text-generation", "en")
    assert data.tags == ["hf_gpt", "gpt", "causal-lm", "llms-from-scratch", "custom_code"]
    assert data.datasets is None  # a local text file is not a Hub dataset id
    assert data.model_name == "gpt-verdict"
    results = {r.metric_type: (r.metric_value, r.dataset_name, r.dataset_split, r.task_type) for r in data.eval_results}
    assert results == {"loss": (6.25, "the-verdict.txt", "validation", "text-generation"),
                       "perplexity": (518.01, "the-verdict.txt", "validation", "text-generation")}
    text = card.text
    for line in (
        f"| Parameters | 811.1K ({model.num_parameters():,}) |",
        "| Layers | 2 |", "| Attention heads | 2 |", "| Embedding size | 16 |", "| Context length | 32 tokens |",
        "| Output head tied to the token embedding | yes |",
        "| learning_rate | 0.0004 |", "| weight_decay | 0.1 |", "| num_train_epochs | 10 |", "| seed | 123 |",
        "| total_train_batch_size | 8 |", "| train_loss | 4.125 |", "| eval_loss | 6.25 |", "| perplexity | 518.01 |",
        "![Training and validation loss](loss.png)",
        'AutoModelForCausalLM.from_pretrained("<your-username>/<model-name>", trust_remote_code=True)',
        'GPTForCausalLM.from_pretrained("<your-username>/<model-name>").save_pretrained_gpt2("gpt2-export")',
        'GPT2LMHeadModel.from_pretrained("gpt2-export")',
        "## Limitations",
    ):
        assert line in text, line
    assert model.num_parameters() == 50257 * 16 + 32 * 16 + 2 * (4 * 16 + 4 * 16 * 16 + 16 + 8 * 16 * 16 + 5 * 16) + 32


def test_card_never_holds_the_token_nor_the_output_path(folder):
    readme = (folder / "README.md").read_text()
    assert TOKEN not in readme and "hub_token" not in readme and str(folder.parent) not in readme
    for name in files_of(folder):
        assert TOKEN.encode() not in (folder / name).read_bytes(), name


def test_card_without_perplexity_derives_it_and_without_eval_has_no_model_index(tmp_path, model):
    card = hub.write_model_card(tmp_path / "a", model_config=model.config, eval_results={"eval_loss": 2.0},
                                dataset_name="Salesforce/wikitext", repo_id="alice/gpt-a")
    loaded = ModelCard.load(tmp_path / "a" / "README.md")
    assert {r.metric_type: r.metric_value for r in loaded.data.eval_results} == {"loss": 2.0, "perplexity": math.exp(2.0)}
    assert loaded.data.datasets == ["Salesforce/wikitext"] and loaded.data.model_name == "alice/gpt-a"
    assert 'from_pretrained("alice/gpt-a", trust_remote_code=True)' in card.text
    assert "loss.png" not in card.text  # no plot in the folder, no broken image

    bare = hub.write_model_card(tmp_path / "b", model_config=model.config)
    assert "model-index" not in (tmp_path / "b" / "README.md").read_text()
    assert "No evaluation recorded." in bare.text and "Data: not recorded." in bare.text


# ----------------------------------------------------------------------------- loading where hf_gpt is absent

FRESH_PROCESS = r"""
import sys
sys.modules["hf_gpt"] = None  # as on a machine that never installed hf_gpt
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
ours_dir, stock_dir, prompt = sys.argv[1:4]
ours = AutoModelForCausalLM.from_pretrained(ours_dir, trust_remote_code=True).eval()
stock = AutoModelForCausalLM.from_pretrained(stock_dir).eval()
tok = AutoTokenizer.from_pretrained(ours_dir, trust_remote_code=True)
ids = tok(prompt, return_tensors="pt").input_ids
with torch.no_grad():
    out = {
        "ours": ours.generate(ids, do_sample=False, max_new_tokens=40)[0].tolist(),
        "stock": stock.generate(ids, do_sample=False, max_new_tokens=20)[0].tolist(),
    }
out["classes"] = [type(ours).__module__ + "." + type(ours).__name__, type(stock).__module__ + "." + type(stock).__name__]
out["hf_gpt_imported"] = sys.modules.get("hf_gpt") is not None
print(json.dumps(out))
"""


@pytest.mark.slow
def test_fresh_process_without_hf_gpt_generates_the_same_tokens_and_stock_export_needs_no_remote_code(
    folder, model, tokenizer, tmp_path
):
    stock_dir = export_folder(folder, tmp_path / "gpt2")
    stock_config = json.loads((stock_dir / "config.json").read_text())
    assert stock_config["model_type"] == "gpt2" and "auto_map" not in stock_config
    assert not [f for f in files_of(stock_dir) if f.endswith(".py")]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(folder), str(stock_dir), PROMPT],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    expected = greedy_ids(model, tokenizer, 40)  # 4 + 40 tokens > context 32: the cropping path runs too
    assert len(expected) == 44
    assert out["ours"] == expected
    assert out["stock"] == expected[:24]
    assert out["classes"][0].startswith("transformers_modules.") and out["classes"][0].endswith(".GPTForCausalLM")
    assert out["classes"][1] == "transformers.models.gpt2.modeling_gpt2.GPT2LMHeadModel"
    assert out["hf_gpt_imported"] is False
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr


def test_stock_export_carries_the_run_artifacts_and_a_gpt2_card(folder, tmp_path):
    stock_dir = export_folder(folder, tmp_path / "gpt2")
    assert files_of(stock_dir) == [
        "README.md", "config.json", "generation_config.json", "loss.png", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]
    card = hub._set_card_repo(stock_dir, "alice/gpt-verdict-gpt2", stock_gpt2=True)
    assert "custom_code" not in card.data.tags and "gpt2" in card.data.tags
    assert "trust_remote_code" not in card.text
    assert 'AutoModelForCausalLM.from_pretrained("alice/gpt-verdict-gpt2")' in card.text
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"loss": 6.25, "perplexity": 518.01}


def test_save_for_hub_takes_a_stock_gpt2_model_too(model, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    stock = model.to_gpt2()
    out = hub.save_for_hub(stock, tokenizer, tmp_path / "gpt2", base_model="openai-community/gpt2")
    assert files_of(out) == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                             "tokenizer.json", "tokenizer_config.json"]
    card = ModelCard.load(out / "README.md")
    assert card.data.tags[-1] == "gpt2" and card.data.base_model == "openai-community/gpt2"
    assert "saved in the stock `gpt2` format" in card.text and "trust_remote_code" not in card.text
    assert f"({stock.num_parameters():,})" in card.text  # GPT-2 always has q/k/v biases
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert type(reloaded).__name__ == "GPT2LMHeadModel" and reloaded.generation_config.top_p == 0.9


# ------------------------------------------------------------------------------------- the stand-in Hub


class StandInHub:
    """Answers, on 127.0.0.1, the Hub endpoints a push uses (create repo, create branch, validate the card's YAML,
    preupload, commit) and records every request and every uploaded file. The only stand-in in the suite."""

    def __init__(self):
        self.requests, self.uploaded, self.created, self.commits = [], {}, [], []
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, payload):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.handle_any("GET")

            def do_POST(self):
                self.handle_any("POST")

            def handle_any(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                hub_.requests.append({"method": method, "path": path, "auth": self.headers.get("Authorization"),
                                      "body": body})
                parts = path.strip("/").split("/")  # api, models, owner, name, action, revision
                host = f"http://{self.headers['Host']}"
                if method == "POST" and path == "/api/repos/create":
                    payload = json.loads(body)
                    hub_.created.append(payload)
                    owner = payload["organization"] or "stand-in-user"  # `name` alone goes to the token's user
                    return self.reply(200, {"url": f"{host}/{owner}/{payload['name']}"})
                if method == "POST" and path == "/api/validate-yaml":
                    return self.reply(200, {"errors": [], "warnings": []})
                if method == "POST" and len(parts) == 6 and parts[:2] == ["api", "models"]:
                    action = parts[4]
                    if action == "branch":
                        return self.reply(200, {})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False} for f in files]})
                    if action == "commit":
                        lines = [json.loads(line) for line in body.decode().splitlines()]
                        hub_.commits.append({"revision": parts[5], "header": lines[0]["value"]})
                        for line in lines[1:]:
                            assert line["key"] == "file", line["key"]
                            hub_.uploaded[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                        return self.reply(200, {"commitUrl": f"{host}/{parts[2]}/{parts[3]}/commit/0123abc",
                                                "commitOid": "0123abc" + "0" * 33})
                return self.reply(404, {"error": f"the stand-in Hub has no {method} {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in_hub():
    server = StandInHub()
    yield server
    server.close()


def push_script(args, stand_in_hub, tmp_path):
    """scripts/push_to_hub.py in its own process, aimed at the stand-in; a fresh HF_HOME holds no saved login."""
    # HF_HUB_DISABLE_XET: the stand-in speaks the plain commit API, not the Xet storage protocol.
    env = {**os.environ, "HF_ENDPOINT": stand_in_hub.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "OMP_NUM_THREADS": "1",
           "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home"), "HF_DEBUG": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "push_to_hub.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def assert_token_only_in_auth_headers(result, stand_in_hub, *folders):
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
    for folder in folders:
        for path in Path(folder).rglob("*"):
            assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
    for request in stand_in_hub.requests:
        assert TOKEN.encode() not in request["body"], request["path"]
    writes = [r for r in stand_in_hub.requests if r["method"] == "POST"]
    assert writes and all(r["auth"] == f"Bearer {TOKEN}" for r in writes)


@pytest.mark.slow
def test_push_with_stand_in_hub_uploads_exactly_the_folder(folder, stand_in_hub, tmp_path):
    run = tmp_path / "gpt-verdict"
    shutil.copytree(folder, run)
    (run / "train_results.json").write_text(json.dumps(TRAIN))
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-10" / "optimizer.pt").write_bytes(b"optimizer state")  # intermediate: stays home
    (run / "_scratch.txt").write_text("private")

    result = push_script([str(run), "alice/gpt-verdict", "--private", "--revision", "exp-1"], stand_in_hub, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    expected = sorted(HF_GPT_FILES + ["train_results.json"])
    assert sorted(stand_in_hub.uploaded) == expected
    for name in expected:
        if name != "README.md":  # the card is a copy pointed at the repo; the user's own stays as it was
            assert stand_in_hub.uploaded[name] == (run / name).read_bytes(), name
    assert (run / "README.md").read_bytes() == (folder / "README.md").read_bytes()
    assert stand_in_hub.created == [{"name": "gpt-verdict", "organization": "alice", "visibility": "private",
                                     "type": "model"}]
    assert [c["revision"] for c in stand_in_hub.commits] == ["exp-1"]
    assert [r["path"] for r in stand_in_hub.requests if r["method"] == "POST"][:2] == [
        "/api/repos/create", "/api/models/alice/gpt-verdict/branch/exp-1"]
    assert f"Uploading {len(expected)} files to alice/gpt-verdict (branch exp-1)" in result.stdout
    assert f"Done: {stand_in_hub.url}/alice/gpt-verdict/commit/0123abc" in result.stdout

    card = ModelCard(stand_in_hub.uploaded["README.md"].decode())
    assert card.data.model_name == "alice/gpt-verdict"
    assert 'AutoModelForCausalLM.from_pretrained("alice/gpt-verdict", trust_remote_code=True)' in card.text
    assert "<your-username>" not in card.text
    assert_token_only_in_auth_headers(result, stand_in_hub, run, tmp_path / "hf_home")


@pytest.mark.slow
def test_push_as_gpt2_with_stand_in_hub_uploads_the_stock_export(folder, stand_in_hub, tmp_path):
    before = {name: (folder / name).read_bytes() for name in files_of(folder)}
    result = push_script([str(folder), "gpt-verdict-gpt2", "--as-gpt2"], stand_in_hub, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    assert sorted(stand_in_hub.uploaded) == [
        "README.md", "config.json", "generation_config.json", "loss.png", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]
    config = json.loads(stand_in_hub.uploaded["config.json"])
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert "auto_map" not in config
    assert [c["revision"] for c in stand_in_hub.commits] == ["main"]
    card = ModelCard(stand_in_hub.uploaded["README.md"].decode())
    assert "gpt2" in card.data.tags and "custom_code" not in card.data.tags
    assert 'AutoModelForCausalLM.from_pretrained("stand-in-user/gpt-verdict-gpt2")' in card.text
    assert card.data.model_name == "stand-in-user/gpt-verdict-gpt2"
    assert stand_in_hub.created == [{"name": "gpt-verdict-gpt2", "organization": None, "type": "model"}]
    assert "trust_remote_code=True" not in card.text
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"loss": 6.25, "perplexity": 518.01}
    assert {name: (folder / name).read_bytes() for name in files_of(folder)} == before  # the source is untouched
    assert_token_only_in_auth_headers(result, stand_in_hub, folder, tmp_path / "hf_home")


# ------------------------------------------------------------------------------------------------ bad input


@pytest.fixture
def push_cli(monkeypatch, capsys):
    """scripts/push_to_hub.py's main in this process, online as far as it knows, with a tripwire on every Hub call:
    each bad input must be stopped before anything is sent."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("push_to_hub_script", REPO / "scripts" / "push_to_hub.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def tripwire(*args, **kwargs):
        raise AssertionError("a bad input reached the Hub")

    for name in ("create_repo", "create_branch", "upload_folder", "create_commit"):
        monkeypatch.setattr(hub.HfApi, name, tripwire)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    def run(*argv):
        code = script.main([str(a) for a in argv])
        out = capsys.readouterr()
        assert TOKEN not in out.out + out.err
        return code, out.err

    return run


def test_push_without_a_token_says_how_to_log_in(push_cli, folder, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    code, err = push_cli(folder, "alice/gpt-verdict")
    assert code == 2
    assert err == f"error: No Hugging Face token found. {hub.HOW_TO_LOG_IN}\n"
    assert "hf auth login" in err and "HF_TOKEN" in err


@pytest.mark.parametrize(
    "repo_id, says",
    [
        ("alice/gpt/verdict", "must be in the form 'repo_name' or 'namespace/repo_name'"),
        ("alice/gpt verdict", "alphanumeric chars, '-', '_' or '.'"),
        ("alice/-gpt", "cannot start or end with '-' or '.'"),
        ("alice/gpt--verdict", "Cannot have -- or .."),
        ("alice/gpt.git", "cannot end by '.git'"),
        ("https://huggingface.co/alice/gpt", "is a URL, not a repo id"),
        ("", "The repo id is empty"),
    ],
)
def test_push_with_a_malformed_repo_id_says_what_is_wrong_before_any_upload(push_cli, folder, repo_id, says):
    code, err = push_cli(folder, repo_id)
    assert code == 2
    assert err.startswith("error: ") and says in err
    assert "e.g. `alice/gpt-verdict`" in err or "Example: `alice/gpt-verdict`" in err


def test_push_of_a_folder_that_is_not_a_model_says_what_is_missing(push_cli, folder, tmp_path):
    code, err = push_cli(tmp_path / "nowhere", "alice/gpt")
    assert (code, err) == (2, f"error: {tmp_path / 'nowhere'} is not a complete model folder: missing the folder "
                                 "itself (no such directory).\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = push_cli(empty, "alice/gpt")
    assert code == 2
    assert "missing config.json" in err and "the weights (model.safetensors" in err and "tokenizer files" in err

    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / "modeling_gpt.py").unlink()
    (partial / "tokenizer.json").unlink()
    code, err = push_cli(partial, "alice/gpt")
    assert code == 2
    assert "missing the tokenizer files (tokenizer.json" in err
    assert "modeling_gpt.py (the model's code that `auto_map` points to)" in err
    assert "config.json (" not in err and "the weights" not in err


def test_push_refuses_a_folder_holding_the_token(push_cli, folder, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(folder, leaky)
    (leaky / "training_args.bin").write_bytes(b"\x80\x04pickle" + TOKEN.encode() + b"tail")
    code, err = push_cli(leaky, "alice/gpt")
    assert code == 2
    assert err.startswith("error: training_args.bin contains your Hugging Face token; refusing to upload it.")


def test_push_offline_says_to_unset_offline_mode(push_cli, folder, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, err = push_cli(folder, "alice/gpt")
    assert (code, err) == (2, "error: HF_HUB_OFFLINE is set, so nothing can reach the Hub: unset HF_HUB_OFFLINE "
                              "to push.\n")


def test_push_to_an_unreachable_hub_says_so_in_one_line(folder, monkeypatch, tmp_path):
    import socket

    with socket.socket() as probe:  # a port on 127.0.0.1 that was free a moment ago: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    with pytest.raises(hub.UsageError, match=rf"^Could not reach the Hub at http://127\.0\.0\.1:{port}: .*HF_ENDPOINT\)\.$"):
        hub.push_folder(run, "alice/gpt", log=lambda message: None)
