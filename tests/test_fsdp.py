"""The shipped FSDP2 config (scripts/accelerate_configs/fsdp.yaml) on this CPU: 2 processes over gloo really shard
the model (fully_shard on every TransformerBlock and the root, each rank holding half of every tensor), train to the
losses of 1 process with the same global batch, save sharded checkpoints that a killed run resumes from, and leave a
normal full model in the output folder."""

import json
import math
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_pretrain_script import DRIVER, REPO, losses, run, tiny_args

FSDP_CONFIG = REPO / "scripts" / "accelerate_configs" / "fsdp.yaml"

# Added to test_pretrain_script's driver: at the start of training, each rank writes what it holds of every parameter
# (the model the Trainer trains, after accelerate prepared it) and which modules fully_shard was applied to.
RECORD_SHARDS = r'''
if os.environ.get("RECORD_SHARDS"):
    import torch
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    class RecordShards(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            params = {name: {"dtensor": isinstance(p, DTensor), "full": p.numel(), "shape": list(p.shape),
                             "local": (p.to_local() if isinstance(p, DTensor) else p).numel(),
                             "placements": [repr(x) for x in getattr(p, "placements", ())]}
                      for name, p in model.named_parameters()}
            record = {"params": params, "world_size": torch.distributed.get_world_size(),
                      "fsdp_modules": [n for n, m in model.named_modules() if isinstance(m, FSDPModule)]}
            rank = os.environ.get("RANK", "0")
            Path(os.environ["RECORD_SHARDS"], f"rank{rank}.json").write_text(json.dumps(record))
    callbacks.append(RecordShards())

'''


def fsdp_launcher(port):
    return (sys.executable, "-m", "accelerate.commands.launch", "--config_file", FSDP_CONFIG, "--num_processes", "2",
            "--main_process_port", str(port))


@pytest.mark.slow
def test_fsdp_on_cpu_shards_matches_one_process_and_resumes(book_reference, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.replace("code = training.main(", RECORD_SHARDS + "code = training.main(", 1))
    common = ["--max_steps", "6", "--eval_steps", "3", "--save_steps", "3", "--bf16", "false"]
    one, two = tmp_path / "one", tmp_path / "two"
    shards = tmp_path / "shards"
    shards.mkdir()
    run([driver, *tiny_args(book_reference, one, *common, "--per_device_train_batch_size", "8")], tmp_path)

    # 4 windows per rank (the global batch of 8), killed after step 4: checkpoint-3 is the last complete one.
    env = {"OMP_NUM_THREADS": "1", "RECORD_SHARDS": str(shards)}
    killed = run([driver, *tiny_args(book_reference, two, *common, "--per_device_train_batch_size", "4")], tmp_path,
                 env={**env, "KILL_AFTER_STEP": "4"}, launcher=fsdp_launcher(29527), expect=None)
    assert killed.returncode != 0

    # Really sharded: fully_shard on the root and on each TransformerBlock of every rank; every parameter a DTensor
    # sharded on dim 0 whose local piece is this rank's half (rows split as torch.chunk does).
    records = [json.loads((shards / f"rank{r}.json").read_text()) for r in (0, 1)]
    for record in records:
        assert record["world_size"] == 2
        assert {"", "gpt.trf_blocks.0", "gpt.trf_blocks.1"} <= set(record["fsdp_modules"]), record["fsdp_modules"]
    names = records[0]["params"].keys()
    assert names == records[1]["params"].keys() and len(names) > 0
    total_full = sum(records[0]["params"][n]["full"] for n in names)
    for name in names:
        p0, p1 = records[0]["params"][name], records[1]["params"][name]
        assert p0["dtensor"] and p1["dtensor"] and p0["placements"] == p1["placements"] == ["Shard(dim=0)"], name
        rows, row = p0["shape"][0], p0["full"] // p0["shape"][0]
        assert p0["local"] == math.ceil(rows / 2) * row and p1["local"] == (rows // 2) * row, name
        assert p0["local"] + p1["local"] == p0["full"], name
    for record in records:
        held = sum(p["local"] for p in record["params"].values())
        assert abs(held - total_full / 2) <= 0.01 * total_full, (held, total_full)

    # Checkpoints stay sharded (torch.distributed.checkpoint folders) and a resume takes them up.
    checkpoint = two / "checkpoint-3"
    assert (checkpoint / "pytorch_model_fsdp_0" / ".metadata").is_file()
    assert (checkpoint / "optimizer_0" / ".metadata").is_file()
    assert (checkpoint / "checkpoint_complete.json").is_file()
    resumed = run([driver, *tiny_args(book_reference, two, *common, "--per_device_train_batch_size", "4",
                                      "--resume_from_checkpoint", "last")],
                  tmp_path, env=env, launcher=fsdp_launcher(29528))
    assert f"Resuming from {checkpoint}" in resumed.stdout + resumed.stderr

    # The same run as one process with 8 windows per step (fp32, no dropout), interruption and all.
    la, lb = losses(one), losses(two)
    assert la.keys() == lb.keys() and any(key == (6, "eval_loss") for key in la)
    for key in la:
        assert lb[key] == pytest.approx(la[key], rel=1e-4, abs=1e-4), key

    # The output folder holds a normal full model: whole tensors, loadable with from_pretrained.
    wa, wb = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wb[name].shape == wa[name].shape, name
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-4, msg=name)
    from hf_gpt.model.modeling_gpt import GPTForCausalLM

    model = GPTForCausalLM.from_pretrained(two)
    for name, tensor in model.state_dict().items():
        if name in wb:
            torch.testing.assert_close(tensor, wb[name], rtol=0, atol=0, msg=name)
    assert (two / "config.json").is_file() and (two / "tokenizer.json").is_file()
