"""scripts/demo.py: the Gradio page served by the script itself and used in a real headless Chromium (no mocks), its
greedy text against `scripts/generate.py --greedy`, and the one-line refusals before any server starts."""

import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hf_gpt.resources import THE_VERDICT

REPO = Path(__file__).resolve().parents[1]
DEMO, GENERATE, PRETRAIN = (REPO / "scripts" / name for name in ("demo.py", "generate.py", "pretrain.py"))
PROMPT = "Every effort moves you"
# Generous: CI machines can be loaded, and a slow start is not what these tests check.
SERVE_TIMEOUT, DONE_TIMEOUT = 300, 300


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def script(*args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, *map(str, args)], env=env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder as pretraining leaves it: weights, tokenizer, model card with validation numbers, loss.png."""
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "gpt-tiny"
    proc = script(PRETRAIN, "--output_dir", out, "--config_overrides", "n_layers=2,emb_dim=32,n_heads=2,context_length=32",
                  "--train_files", THE_VERDICT, "--per_device_train_batch_size", "4", "--max_eval_samples", "8",
                  "--eval_train_samples", "8", "--sample_max_new_tokens", "0", "--max_steps", "4", "--save_steps", "4",
                  "--eval_steps", "2", "--logging_steps", "2", "--disable_tqdm", "true", cwd=tmp, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "loss.png").is_file() and (out / "README.md").is_file()
    return out


@functools.cache
def greedy_text(folder, max_new_tokens):
    proc = script(GENERATE, folder, PROMPT, "--greedy", "--max_new_tokens", max_new_tokens)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.endswith("\n")
    return proc.stdout[:-1]  # print()'s newline; the text is the prompt and its continuation


@pytest.fixture
def server(trained, tmp_path):
    """`scripts/demo.py FOLDER --port FREE` in its own process, polled until it serves; killed afterwards."""
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, str(DEMO), str(trained), "--port", str(port)], env=env(), cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url, log_text = f"http://127.0.0.1:{port}/", lambda: (tmp_path / "server.log").read_text()
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never through a proxy
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            assert proc.poll() is None, f"the demo exited with {proc.returncode}:\n{log_text()}"
            try:
                with direct.open(url, timeout=10) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not serving after {SERVE_TIMEOUT} s:\n{log_text()}"
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the test extra)")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_streams_the_greedy_text_generate_prints(trained, server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    expected = greedy_text(trained, 12)
    browser.get(server)
    wait = WebDriverWait(browser, SERVE_TIMEOUT)
    prompt = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
    prompt.send_keys(Keys.CONTROL, "a")
    prompt.send_keys(Keys.DELETE, PROMPT)
    browser.find_element(By.CSS_SELECTOR, "#mode input[value='greedy']").click()
    tokens = browser.find_element(By.CSS_SELECTOR, "#max_new_tokens input[type='number']")
    tokens.send_keys(Keys.CONTROL, "a")
    tokens.send_keys("12", Keys.TAB)
    slider = browser.find_element(By.CSS_SELECTOR, "#max_new_tokens input[type='range']")
    wait.until(lambda d: slider.get_attribute("value") == "12")
    browser.find_element(By.CSS_SELECTOR, "#generate").click()

    status = lambda d: d.find_element(By.CSS_SELECTOR, "#status").text  # noqa: E731
    try:
        WebDriverWait(browser, DONE_TIMEOUT).until(lambda d: status(d).startswith("Done"))
    finally:
        browser.save_screenshot(str(tmp_path / "demo.png"))
        print(f"screenshot: {tmp_path / 'demo.png'}")
    assert status(browser).startswith("Done: 12 new tokens in ")
    assert browser.find_element(By.CSS_SELECTOR, "#output textarea").get_attribute("value") == expected

    facts = browser.find_element(By.CSS_SELECTOR, "#facts").text
    card = json.loads((trained / "eval_results.json").read_text())
    assert f"Validation loss: {card['eval_loss']:.4f} on the-verdict.txt" in facts
    assert f"Perplexity: {card['perplexity']:.2f}" in facts and "Context length: 32 tokens" in facts
    plot = browser.find_element(By.CSS_SELECTOR, "#loss_plot img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", plot) > 0


def load_demo():
    spec = importlib.util.spec_from_file_location("demo_script", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_stock_gpt2_folder_streams_the_same_text_token_by_token(trained, tmp_path):
    """The page's generator without the page: a stock GPT-2 export gives generate.py's greedy text, in pieces."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_gpt.hub import export_folder

    stock = export_folder(trained, tmp_path / "gpt2")
    demo = load_demo()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(stock).eval(), AutoTokenizer.from_pretrained(stock)
    updates = list(demo.stream(model, tokenizer, "cpu", PROMPT, 12, demo.GREEDY, 1.0, 0, 1.0, 0))
    assert len(updates) > 2 and updates[-1][1].startswith("Done: 12 new tokens")
    assert updates[-1][0] == greedy_text(stock, 12) == greedy_text(trained, 12)
    assert "gpt2 (GPT2LMHeadModel)" in demo.facts(stock, model)


@pytest.mark.slow
def test_sampling_with_a_seed_gives_what_generate_gives_with_that_seed(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    demo = load_demo()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(trained).eval(), AutoTokenizer.from_pretrained(trained)
    texts = [list(demo.stream(model, tokenizer, "cpu", PROMPT, 12, demo.SAMPLE, 0.8, 20, 0.95, seed))[-1][0]
             for seed in (5, 5, 6)]
    assert texts[0] == texts[1] != texts[2]
    proc = script(GENERATE, trained, PROMPT, "--seed", 5, "--temperature", 0.8, "--top_k", 20, "--top_p", 0.95,
                  "--max_new_tokens", 12)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == texts[0] + "\n"


def test_the_validation_numbers_come_from_the_card_else_from_eval_results_json(tmp_path):
    import hf_gpt
    from hf_gpt.cards import read_eval_results, write_model_card

    config = hf_gpt.GPTConfig(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=2)
    write_model_card(tmp_path / "card", model_config=config, eval_results={"eval_loss": 2.5},
                     dataset_name="the-verdict.txt")
    assert read_eval_results(tmp_path / "card") == pytest.approx(
        {"eval_loss": 2.5, "perplexity": 12.182494, "dataset": "the-verdict.txt"})
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "eval_results.json").write_text('{"eval_loss": 3.0, "perplexity": 20.0, "epoch": 1.0}')
    assert read_eval_results(tmp_path / "json") == {"eval_loss": 3.0, "perplexity": 20.0}
    assert read_eval_results(tmp_path) == {}


def test_no_such_folder_is_one_line(tmp_path):
    proc = script(DEMO, tmp_path / "missing")
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"error: no such folder: {tmp_path / 'missing'}\n")


def test_a_folder_that_is_not_a_model_says_what_is_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    proc = script(DEMO, tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {tmp_path} is not a complete model folder: missing config.json")
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_port_in_use_is_refused_before_the_model_loads(trained):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = script(DEMO, trained, "--port", port)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"error: port {port} on 127.0.0.1 is in use (Address already in use): stop what holds it, "
                           f"or pick another with --port\n")


@pytest.mark.slow
def test_without_gradio_one_line_says_how_to_install_it(trained):
    run_without_gradio = ("import runpy, sys; sys.modules['gradio'] = None; "  # None in sys.modules: ImportError
                          f"sys.argv = ['demo.py', {str(trained)!r}, '--port', '{free_port()}']; "
                          f"runpy.run_path({str(DEMO)!r}, run_name='__main__')")
    proc = script("-c", run_without_gradio)
    assert proc.returncode == 2
    assert proc.stderr == 'error: the demo page needs gradio: pip install -e ".[demo]"\n'
