"""kiln.config: every KILN_* setting read once from the environment, checked, overridable in code."""
import dataclasses
import os
import re
import subprocess
import sys

import pytest

import kiln
from kiln import config
from kiln.config import ConfigError, Settings, from_env
from kiln.passes import default_pipeline
from kiln.passes.manager import DumpWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_VARS = [f.metadata["env"] for f in dataclasses.fields(Settings)]
SRC = """
    graph f(%x: f32[4]) {
      %a: f32[4] = exp(%x)
      %b: f32[4] = exp(%x)
      %s: f32[4] = add(%a, %b)
      return (%s)
    }"""


def test_defaults_from_an_empty_environment():
    s = from_env({})
    assert (s.verify, s.dump, s.passes, s.num_threads) == (False, None, True, None)
    assert (s.backend, s.cache, s.strict_fp, s.profile, s.loop_partition) == ("llvm", True, False, False, True)
    assert s.cache_dir == os.path.join(os.path.expanduser("~"), ".cache", "kiln")
    assert from_env({"XDG_CACHE_HOME": "/xdg"}).cache_dir == os.path.join("/xdg", "kiln")


def test_every_variable_is_parsed():
    s = from_env({"KILN_VERIFY": "1", "KILN_DUMP": "d", "KILN_PASSES": "0", "KILN_NUM_THREADS": "3",
                  "KILN_BACKEND": "reference", "KILN_CACHE_DIR": "/c", "KILN_CACHE": "0", "KILN_STRICT_FP": "yes",
                  "KILN_PROFILE": "on", "KILN_LOOP_PARTITION": "off"})
    assert s == Settings(verify=True, dump="d", passes=False, num_threads=3, backend="reference", cache_dir="/c",
                         cache=False, strict_fp=True, profile=True, loop_partition=False)


@pytest.mark.parametrize("text,value", [("1", True), ("true", True), ("Yes", True), (" on ", True),
                                        ("0", False), ("FALSE", False), ("no", False), ("off", False)])
def test_flag_spellings(text, value):
    assert from_env({"KILN_VERIFY": text}).verify is value
    assert from_env({"KILN_CACHE": text}).cache is value


def test_empty_means_default():
    assert from_env({v: "" for v in ALL_VARS}) == from_env({})


@pytest.mark.parametrize("env,text,accepted", [
    ("KILN_VERIFY", "maybe", "1/0, true/false, yes/no or on/off"),
    ("KILN_PASSES", "2", "1/0, true/false"),
    ("KILN_NUM_THREADS", "0", "a positive integer"),
    ("KILN_NUM_THREADS", "four", "a positive integer"),
    ("KILN_BACKEND", "gpu", "'llvm' | 'reference' | 'cuda'"),
])
def test_bad_variable_names_it_and_the_accepted_values(env, text, accepted):
    with pytest.raises(ConfigError) as ei:
        from_env({env: text})
    msg = str(ei.value)
    assert msg.startswith(f"{env}={text!r} is not accepted") and accepted in msg


def test_bad_variable_fails_import_with_the_message():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", "import kiln"], env={**env, "KILN_BACKEND": "cpu"},
                         capture_output=True, text=True)
    assert out.returncode != 0 and "KILN_BACKEND='cpu' is not accepted" in out.stderr


def test_environment_is_read_at_import():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env.update(PYTHONPATH=ROOT, KILN_DUMP="somewhere", KILN_PASSES="off")
    out = subprocess.run([sys.executable, "-c", "import kiln; s = kiln.config.get(); print(s.dump, s.passes)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["somewhere", "False"]


def test_override_restores_and_set_persists(tmp_path):
    before = config.get()
    with config.override(dump=tmp_path, passes=False) as s:
        assert config.get() is s and s.dump == str(tmp_path) and s.passes is False
        with config.override(dump=None):
            assert config.get().dump is None
        assert config.get().dump == str(tmp_path)
    assert config.get() == before
    try:
        assert config.set(profile=True).profile is True
        assert config.get().profile is True
    finally:
        config.set(profile=before.profile)


def test_override_restores_after_an_error():
    before = config.get()
    with pytest.raises(KeyError):
        with config.override(strict_fp=True):
            raise KeyError("x")
    assert config.get() == before


@pytest.mark.parametrize("changes,msg", [
    ({"verify": "1"}, "verify='1' is not accepted (KILN_VERIFY); expected True or False"),
    ({"num_threads": 0}, "num_threads=0 is not accepted (KILN_NUM_THREADS); expected a positive integer or None"),
    ({"num_threads": True}, "num_threads=True"),
    ({"backend": "gpu"}, "expected 'llvm' | 'reference' | 'cuda'"),
    ({"dump": 3}, "dump=3 is not accepted (KILN_DUMP); expected a directory path or None"),
    ({"cache_dir": None}, "cache_dir=None is not accepted (KILN_CACHE_DIR)"),
])
def test_bad_value_in_code_names_the_setting(changes, msg):
    before = config.get()
    with pytest.raises(ConfigError) as ei:
        config.set(**changes)
    assert msg in str(ei.value)
    with pytest.raises(ConfigError):
        with config.override(**changes):
            pass
    assert config.get() == before  # nothing was changed


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(TypeError, match="no setting 'dumps'; the settings are: verify, dump, passes"):
        config.set(dumps="d")


def test_describe_lists_every_setting_with_its_value():
    text = config.describe(from_env({"KILN_NUM_THREADS": "2"}))
    lines = text.splitlines()
    assert len(lines) == len(ALL_VARS)
    for line, f in zip(lines, dataclasses.fields(Settings)):
        assert line.split()[:2] == [f.name, f.metadata["env"]] and f.metadata["doc"] in line
    assert re.search(r"^num_threads +KILN_NUM_THREADS +2 ", text, re.M)


def test_exported_from_kiln():
    assert kiln.config is config


def test_every_setting_is_in_the_user_guides_table():
    with open(os.path.join(ROOT, "docs", "user-guide.md")) as f:
        guide = f.read()
    rows = [f"| `{f.metadata['env']}` | `{f.name}` |" for f in dataclasses.fields(Settings)]
    assert [r for r in rows if r not in guide] == []


def test_only_the_config_module_reads_the_environment():
    readers = []
    for d, _, files in os.walk(os.path.join(ROOT, "kiln")):
        for fn in files:
            if fn.endswith(".py"):
                path = os.path.join(d, fn)
                with open(path) as f:
                    text = f.read()
                if "environ" in text or "getenv" in text:
                    readers.append(os.path.relpath(path, ROOT))
    assert readers == [os.path.join("kiln", "config.py")]


def test_settings_changed_in_code_reach_the_pipeline(tmp_path):
    f = kiln.compile(lambda x: (x * 1.0).exp())
    with config.override(passes=False, dump=str(tmp_path)):
        g = f.graph_for(kiln.ones(3))
    assert [n.op for n in g.nodes] == ["constant", "mul", "exp"]  # unoptimized: x * 1.0 is kept
    assert os.listdir(tmp_path) == ["001-lambda-traced.txt"]  # traced, no pass ran
    f.cache_clear()
    assert [n.op for n in f.graph_for(kiln.ones(3)).nodes] == ["exp"]


# -- the dump writer: numbered files in pipeline order, the number owned by the writer -----------

def test_dump_writer_numbers_files_in_the_order_written(tmp_path):
    w = DumpWriter(tmp_path / "d", start=7)
    assert w.write("a", "text") == 7 and w.write("b", kiln.parse_graph(SRC)) == 8
    assert sorted(os.listdir(tmp_path / "d")) == ["007-a.txt", "008-b.txt"]
    assert (tmp_path / "d" / "008-b.txt").read_text() == str(kiln.parse_graph(SRC))
    assert w.next_index == 9
    quiet = DumpWriter(None)
    assert quiet.write("a", "text") == 1 and quiet.next_index == 2  # counts, writes nothing


def test_pipeline_continues_the_writers_numbering(tmp_path):
    w = DumpWriter(tmp_path)
    w.write("f-traced", "...")
    report = default_pipeline().run_report(kiln.parse_graph(SRC), writer=w, prefix="f-", plans=False)
    files = sorted(os.listdir(tmp_path))
    assert files[:2] == ["001-f-traced.txt", "002-f-dce.txt"] and files[-1] == f"{len(files):03d}-f-summary.txt"
    assert report.next_index == w.next_index == len(files) + 1
    assert [r.index for r in report.records] == list(range(2, 2 + len(report.records)))
    with pytest.raises(TypeError, match="dump_dir or writer, not both"):
        default_pipeline().run_report(kiln.parse_graph(SRC), dump_dir=str(tmp_path), writer=w)


def test_compiles_share_one_numbering_per_dump_directory(tmp_path):
    def numbers(d):
        return [int(fn[:3]) for fn in sorted(os.listdir(d))]

    with config.override(dump=str(tmp_path / "a")):
        kiln.compile(lambda x: x.exp())(kiln.ones(2))
        first = len(os.listdir(tmp_path / "a"))
        kiln.compile(lambda x: x.tanh())(kiln.ones(2))
    assert numbers(tmp_path / "a") == list(range(1, len(os.listdir(tmp_path / "a")) + 1))
    assert sorted(os.listdir(tmp_path / "a"))[first] == f"{first + 1:03d}-lambda-traced.txt"
    with config.override(dump=str(tmp_path / "b")):  # a new directory starts at 001
        kiln.compile(lambda x: x.exp())(kiln.ones(2))
    assert sorted(os.listdir(tmp_path / "b"))[0] == "001-lambda-traced.txt"
    with config.override(dump=str(tmp_path / "a")):  # back to the first: its numbering goes on
        kiln.compile(lambda x: x.exp())(kiln.ones(2))
    assert numbers(tmp_path / "a") == list(range(1, len(os.listdir(tmp_path / "a")) + 1))


# -- vjp → split → optimize: one function for kiln.vjp and compiled autograd ----------------------

def test_vjp_and_compiled_autograd_share_forward_backward(tmp_path):
    from kiln.frontend.compile import forward_backward
    from kiln.passes import optimize

    def f(x):
        return (x.exp() * x).sum()

    x = kiln.randn(3, requires_grad=True)
    with config.override(dump=str(tmp_path)):
        kiln.vjp(f, x)
        compiled = kiln.compile(f)
        compiled(x)
    names = {fn[4:] for fn in os.listdir(tmp_path)}
    assert {"f_vjp_fwd-dce.txt", "f_vjp_bwd-dce.txt", "f_fwd-dce.txt", "f_bwd-dce.txt"} <= names
    split = forward_backward(optimize(kiln.make_graph(f)(x)), [0], [0])
    assert compiled.graph_for(x) == split.forward
    assert split.n_outputs == 1 and len(split.backward.outputs) == 1


def test_kiln_backend_cuda_selects_the_cuda_backend():
    from kiln.runtime.backend import default_backend_name, get_backend
    assert from_env({"KILN_BACKEND": "cuda"}).backend == "cuda"
    with config.override(backend="cuda"):
        assert default_backend_name() == "cuda" and get_backend().name == "cuda"
