# SPDX-License-Identifier: MIT
"""Issue 15, "claims hold": the five documented behaviours that did not hold, each checked on the bundled
fixture (fixtures/pycode-16m, inside the repository):
1. `quantize --chat-template` exists and feeds the same calibration as `tokenize --calib --chat-template`;
2. docs/slurm.md's submission examples pass qdist's own checks (the AWQ one used 3 bits with FORMAT=awq);
3. lm_head is never quantized: a recipe's "lm_head": true is a usage error, `export --lm-head` on a qdist
   run is refused, and docs/formats.md no longer says a qdist run exports a quantized lm_head;
4. `--quiet` silences `--format fake` as it does the checkpoint formats;
5. a recipe override the method or format cannot take is refused before any work (no calibration, no
   staging), naming the override's pattern and field."""
import json
import os
import re
import shutil

import jinja2
import pytest
import safetensors.torch as st
import tokenizers
import torch

import qdtest as qt

REPO, M = str(qt.REPO), str(qt.PYCODE)
SMALL = ["--nsamples", "4", "--seqlen", "64"]
# every block but the first left unquantized: the runs below test set-up and calibration, not the search
ONLY_LAYER0 = {"overrides": [{"match": r"layers\.([1-9]|[0-9][0-9]+)\.", "skip": True}]}


def qd(*args, env=None):
    return qt.qdist(*args, ok=False, env=env, timeout=300)


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


def messages_file(path, n=24):
    with open(path, "w") as f:
        for i in range(n):
            msgs = [{"role": "system", "content": "You write Python."},
                    {"role": "user", "content": f"def f{i}(x):\n    return x * {i}\n" * 4},
                    {"role": "assistant", "content": f"print(f{i}(2))  # {i}\n" * 6}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


# ---- 1. --chat-template on quantize ------------------------------------------------------------------

def test_quantize_without_template_names_the_option_it_has(tmp_path):
    calib = messages_file(tmp_path / "chat.jsonl")
    r = qd("quantize", "--model", M, "--output", tmp_path / "o", "--calib", calib, "--method", "gptq",
           "--format", "fake", *SMALL)
    assert r.returncode == 1, r.stderr
    assert "--chat-template" in r.stderr
    # the option the message names is one quantize accepts
    assert "--chat-template" in qd("quantize", "--help").stdout + qd("quantize", "--help").stderr


@pytest.mark.parametrize("template", ["chatml", "llama3", "llama2", "none"])
def test_quantize_chat_template_uses_the_tokenize_code_path(tmp_path, template):
    calib = messages_file(tmp_path / "chat.jsonl")
    recipe = write_json(tmp_path / "r.json", ONLY_LAYER0)
    out = tmp_path / "o"
    r = qd("quantize", "--model", M, "--output", out, "--calib", calib, "--chat-template", template,
           "--method", "gptq", "--format", "fake", "--recipe", recipe, "--quiet", *SMALL)
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "qdist_report.json").read_text())["calibration"]["sha256"]
    p = qd("tokenize", "--model", M, "--calib", calib, "--chat-template", template, "--calib-mode", "random",
           *SMALL)
    assert p.returncode == 0, p.stderr
    want = json.loads(p.stdout)
    assert want["chat_template"] == template
    assert got == want["sha256"]


def test_chat_templates_render_differently(tmp_path):
    calib = messages_file(tmp_path / "chat.jsonl")
    shas = set()
    for t in ["chatml", "llama3", "llama2", "none"]:
        p = qd("tokenize", "--model", M, "--calib", calib, "--chat-template", t, *SMALL)
        assert p.returncode == 0, p.stderr
        shas.add(json.loads(p.stdout)["sha256"])
    assert len(shas) == 4


# ---- 2. docs/slurm.md's examples ----------------------------------------------------------------------

SLURM_FLAGS = {"METHOD": "--method", "BITS": "--bits", "GROUP_SIZE": "--group-size", "FORMAT": "--format"}


def slurm_examples():
    text = open(os.path.join(REPO, "docs", "slurm.md")).read()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for cmd in re.sub(r"\\\n\s*", " ", block).splitlines():
            cmd = cmd.strip()
            if "sbatch" in cmd and not cmd.startswith("#"):
                out.append(dict(re.findall(r"\b([A-Z_]+)=(\S+)", cmd.split("sbatch")[0])))
    return out


def test_slurm_examples_are_accepted(tmp_path):
    examples = slurm_examples()
    assert len(examples) >= 3, "docs/slurm.md's submission examples were not found"
    recipe = write_json(tmp_path / "r.json", ONLY_LAYER0)
    for i, env in enumerate(examples):
        # the templates' defaults (docs/slurm.md's table), then the example's own settings
        flags = {"--method": "gptq", "--bits": "4", "--group-size": "128", "--format": "gptq"}
        flags.update({SLURM_FLAGS[k]: v for k, v in env.items() if k in SLURM_FLAGS})
        args = [x for kv in flags.items() for x in kv]
        r = qd("quantize", "--model", M, "--calib", os.path.join(M, "calib.jsonl"), "--output", tmp_path / f"o{i}",
               "--recipe", recipe, "--quiet", *SMALL, *args)
        assert r.returncode == 0, f"docs/slurm.md example {env}: {r.stderr}"


# ---- 3. lm_head -------------------------------------------------------------------------------------

def test_recipe_lm_head_true_is_a_usage_error(tmp_path):
    recipe = write_json(tmp_path / "r.json", {"lm_head": True})
    r = qd("quantize", "--model", M, "--output", tmp_path / "o", "--method", "rtn", "--recipe", recipe)
    assert r.returncode == 2, r.stderr
    assert "lm_head" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    # false stays accepted
    recipe = write_json(tmp_path / "r2.json", {"lm_head": False})
    r = qd("quantize", "--model", M, "--output", tmp_path / "o2", "--method", "rtn", "--format", "fake",
           "--recipe", recipe, "--quiet")
    assert r.returncode == 0, r.stderr


def test_export_lm_head_on_a_qdist_run_is_refused_and_documented(tmp_path):
    fake = tmp_path / "fake"
    r = qd("quantize", "--model", M, "--output", fake, "--method", "rtn", "--format", "fake", "--quiet")
    assert r.returncode == 0, r.stderr
    r = qd("export", "--input", fake, "--output", tmp_path / "x", "--format", "gptq", "--lm-head")
    assert r.returncode != 0 and "lm_head" in r.stderr
    assert not (tmp_path / "x").exists()
    doc = open(os.path.join(REPO, "docs", "formats.md")).read()
    assert "never quantizes lm_head" in doc
    assert "is warned about and ignored" not in open(os.path.join(REPO, "docs", "numerics.md")).read()


# ---- 4. --quiet with --format fake -----------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["fake", "gptq"])
def test_quiet_prints_nothing(tmp_path, fmt):
    r = qd("quantize", "--model", M, "--output", tmp_path / "o", "--method", "rtn", "--format", fmt, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


def test_quiet_fake_with_calibration(tmp_path):
    recipe = write_json(tmp_path / "r.json", ONLY_LAYER0)
    r = qd("quantize", "--model", M, "--output", tmp_path / "o", "--method", "gptq", "--format", "fake",
           "--calib", os.path.join(M, "calib.jsonl"), "--recipe", recipe, "--quiet", *SMALL)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


# ---- 5. overrides checked before any work ----------------------------------------------------------

def refused_before_work(tmp_path, recipe_obj, *args):
    recipe = write_json(tmp_path / "r.json", recipe_obj)
    out = tmp_path / "o"
    r = qd("quantize", "--model", M, "--output", out, "--calib", os.path.join(M, "calib.jsonl"), "--recipe", recipe,
           *SMALL, *args)
    assert r.returncode != 0, r.stderr
    lines = r.stderr.strip().splitlines()
    # one line: no "calibration tokens" info line before it, so the calibration was never read
    assert len(lines) == 1, lines
    assert not out.exists() and not (tmp_path / "o.qdist-staging").exists()
    return lines[0]


def test_awq_8bit_override_refused_before_the_search(tmp_path):
    msg = refused_before_work(tmp_path, {"overrides": [{"match": r"mlp\.down_proj$", "bits": 8}]}, "--method", "awq")
    assert r"mlp\.down_proj$" in msg and "bits" in msg and "4-bit" in msg
    # the rerun the issue describes, with the recipe fixed and --overwrite, is not blocked by a staging
    recipe = write_json(tmp_path / "ok.json", ONLY_LAYER0)
    r = qd("quantize", "--model", M, "--output", tmp_path / "o", "--calib", os.path.join(M, "calib.jsonl"),
           "--recipe", recipe, "--method", "awq", "--overwrite", "--quiet", *SMALL)
    assert r.returncode == 0, r.stderr


def test_group_size_override_on_a_later_layer_refused_before_work(tmp_path):
    # 1024 input features of down_proj: 96 does not divide them; only layer 5 gets it
    msg = refused_before_work(tmp_path, {"overrides": [{"match": r"layers\.5\.mlp\.down_proj", "group_size": 96}]},
                              "--method", "gptq", "--format", "gptq")
    assert "layers.5.mlp.down_proj" in msg and "group_size" in msg


def test_awq_mixed_group_sizes_refused_before_work(tmp_path):
    msg = refused_before_work(tmp_path, {"overrides": [{"match": r"self_attn\.o_proj", "group_size": 64}]},
                              "--method", "awq")
    assert "o_proj" in msg and "group" in msg


def test_symmetric_override_for_awq_format_refused_before_work(tmp_path):
    msg = refused_before_work(tmp_path, {"overrides": [{"match": r"up_proj", "sym": True}]}, "--method", "awq")
    assert "up_proj" in msg and "sym" in msg


def test_same_override_accepted_where_the_format_stores_it(tmp_path):
    recipe = write_json(tmp_path / "r.json", {"overrides": [{"match": r"mlp\.down_proj$", "bits": 8},
                                                            {"match": r"layers\.([1-9])\.", "skip": True}]})
    out = tmp_path / "o"
    r = qd("quantize", "--model", M, "--output", out, "--calib", os.path.join(M, "calib.jsonl"), "--recipe", recipe,
           "--method", "awq", "--format", "gptq", "--quiet", *SMALL)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["bits"] == 4


# ---- 1b. the model's own template, without Jinja ---------------------------------------------------

# Qwen2.5's template (its tool-call branches left out): ChatML with a fixed system line when none is given
QWEN25 = ("{%- if messages[0]['role'] == 'system' %}"
          "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
          "{%- else %}"
          "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
          "{%- endif %}"
          "{%- for message in messages %}"
          "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
          "(message.role == 'assistant') %}"
          "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
          "{%- endif %}"
          "{%- endfor %}"
          "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def model_with_template(tmp_path, template, in_file):
    d = tmp_path / "model"
    d.mkdir()
    for f in os.listdir(M):
        if f.endswith(".safetensors"):
            os.symlink(os.path.join(M, f), d / f)   # the weights are only read
        elif f != "tokenizer_config.json":
            shutil.copy(os.path.join(M, f), d / f)  # copied into the checkpoint: a link would be refused
    cfg = json.load(open(os.path.join(M, "tokenizer_config.json")))
    if in_file:
        (d / "chat_template.jinja").write_text(template)
    else:
        cfg["chat_template"] = template
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("in_file", [False, True], ids=["tokenizer_config", "chat_template.jinja"])
@pytest.mark.parametrize("with_system", [False, True])
def test_model_chatml_template_with_default_system_matches_jinja(tmp_path, in_file, with_system):
    model = model_with_template(tmp_path, QWEN25, in_file)
    convo = [{"role": "user", "content": "Sum 2+2?"}, {"role": "assistant", "content": "4"},
             {"role": "user", "content": "Thanks"}]
    if with_system:
        convo = [{"role": "system", "content": "Be brief."}] + convo
    calib = tmp_path / "chat.jsonl"
    calib.write_text(json.dumps({"messages": convo}) + "\n")
    text = jinja2.Template(QWEN25).render(messages=convo, add_generation_prompt=False)
    want = tokenizers.Tokenizer.from_file(os.path.join(M, "tokenizer.json")).encode(text, add_special_tokens=False).ids
    p = qd("tokenize", "--model", model, "--calib", calib, "--nsamples", "1", "--seqlen", len(want))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["chat_template"] == "chatml" and out["ids"][0] == want
    # quantize reads the same calibration
    r = qd("quantize", "--model", model, "--output", tmp_path / "o", "--calib", calib, "--method", "gptq",
           "--format", "fake", "--recipe", write_json(tmp_path / "r.json", ONLY_LAYER0), "--quiet",
           "--nsamples", "1", "--seqlen", len(want))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "qdist_report.json").read_text())["calibration"]["sha256"] == out["sha256"]


def test_mistral_template_is_refused_not_rendered_as_llama2(tmp_path):
    # Mistral-7B-Instruct-v0.1's template: [INST] without Llama-2's <<SYS>> block, other spacing
    mistral = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
               "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
    model = model_with_template(tmp_path, mistral, False)
    calib = messages_file(tmp_path / "chat.jsonl")
    p = qd("tokenize", "--model", model, "--calib", calib, *SMALL)
    assert p.returncode == 1 and "--chat-template" in p.stderr, p.stderr


def test_export_failure_after_staging_says_how_to_reuse_the_blocks(tmp_path):
    """A failure only the export can see (GPTQ v1 cannot store an asymmetric zero point of 0, which an
    all-positive weight gets) keeps the staged blocks; the message says how to export them with --resume,
    and doing what it says works without quantizing again."""
    model = tmp_path / "model"
    shutil.copytree(M, model)
    shard = model / "model-00001-of-00003.safetensors"
    tensors = st.load_file(str(shard))
    name = "model.layers.0.self_attn.q_proj.weight"
    tensors[name] = tensors[name].abs() + torch.finfo(tensors[name].dtype).tiny
    st.save_file(tensors, str(shard), metadata={"format": "pt"})
    out = tmp_path / "o"
    base = ["quantize", "--model", model, "--output", out, "--method", "rtn", "--asym", "--group-size", "64"]
    r = qd(*base, "--format", "gptq")
    assert r.returncode == 1 and "zero point of 0" in r.stderr, r.stderr
    assert "--resume" in r.stderr and "--format may change" in r.stderr, r.stderr
    assert (tmp_path / "o.qdist-staging").is_dir() and not out.exists()
    r = qd(*base, "--format", "gptq_v2", "--resume", "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert "(0 quantized now, 8 resumed from staging)" in r.stderr, r.stderr
    assert json.loads((out / "config.json").read_text())["quantization_config"]["checkpoint_format"] == "gptq_v2"


def test_quiet_on_eval_and_export(tmp_path):
    """--quiet everywhere: eval and export take it too (info lines gone, the result and errors kept)."""
    r = qd("eval", "--model", M, "--data", os.path.join(M, "eval.txt"), "--seqlen", "64", "--max-windows", "1",
           "--json", "--quiet")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout)["windows"] == 1
    fake = tmp_path / "fake"
    assert qd("quantize", "--model", M, "--output", fake, "--method", "rtn", "--format", "fake", "--quiet").returncode == 0
    r = qd("export", "--input", fake, "--output", tmp_path / "x", "--format", "gptq", "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    r = qd("export", "--input", fake, "--output", tmp_path / "x", "--format", "gptq", "--quiet")
    # errors still reach stderr: x holds the first export (qdist's marker), so --overwrite is the way
    assert r.returncode == 2 and "pass --overwrite" in r.stderr and str(tmp_path / "x") in r.stderr, r.stderr
