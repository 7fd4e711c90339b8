"""TRL's SFTTrainer, with its default settings, on an hf_gpt model (issue 12).

SFTTrainer's default loss runs `model.base_model` and applies the LM head itself (a fused head that never builds the
full logits), so it needs a backbone that returns `last_hidden_state`: `GPTForCausalLM.gpt`.
"""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer  # noqa: E402

TEXTS = [
    "I had always thought Jack Gisburn rather a cheap genius.",
    "It was no great surprise to me to hear that he had dropped his painting.",
    "Every effort moves you forward, and every step counts.",
    "The sketch of the donkey hung above the mantel-piece.",
]

FRESH_PROCESS = """
import sys
sys.modules["hf_gpt"] = None  # as on a machine that never installed hf_gpt
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
torch.save(model(torch.load(sys.argv[2])).logits.detach(), sys.argv[3])
"""


@pytest.mark.slow
def test_sft_trainer_with_default_settings_trains_and_the_saved_model_reloads(tmp_path, one_thread):
    tokenizer = load_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=len(tokenizer), context_length=32, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)
    model = GPTForCausalLM(config)
    args = SFTConfig(  # TRL's defaults otherwise: loss_type "nll", gradient checkpointing, bf16 where it can
        output_dir=str(tmp_path / "run"), max_steps=8, learning_rate=1e-2, per_device_train_batch_size=4,
        max_length=config.context_length, logging_steps=1, save_strategy="no", report_to="none", seed=0,
        use_cpu=not torch.cuda.is_available(),  # TRL's bf16 default asks for it on a CPU-only machine
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": TEXTS * 8}),
                         processing_class=tokenizer)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 8 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0] - 1.0, losses

    folder = tmp_path / "model"
    trainer.save_model(str(folder))
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(reloaded) is GPTForCausalLM
    trained, saved = model.state_dict(), reloaded.state_dict()
    assert trained.keys() == saved.keys() and all(torch.equal(trained[k], saved[k]) for k in trained)
    # The trained model's own forward still runs under the Trainer's bf16 autocast; the reloaded one is plain fp32.
    ids = tokenizer(TEXTS[0], return_tensors="pt").input_ids
    with torch.no_grad():
        expected = reloaded(ids).logits

    torch.save(ids, tmp_path / "ids.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(folder), str(tmp_path / "ids.pt"),
                             str(tmp_path / "logits.pt")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-5)
