import subprocess
import sys
import tomllib

import pytest
import yaml

from models.config import MODES, load_config, parse_config
from models.errors import ConfigError
from tests.conftest import ROOT

SHIPPED_KEYS = ["dots_ocr", "qwen3_vl_2b", "qwen2_vl_2b", "phi35_vision", "paddleocr_vl", "tesseract"]


def raw():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_loads_with_the_six_models(config):
    assert list(config.models) == SHIPPED_KEYS
    assert config.default_model == "qwen3_vl_2b"
    assert config.fallback_model == "tesseract"
    assert (config.gpu.vram_total_gb, config.gpu.vram_usable_gb, config.gpu.vram_recommended_max_gb) == (12, 10, 8)
    assert config.limits.max_image_pixels == 120_000_000


def test_seed_vram_figures_and_pinned_images(config):
    seed = {"dots_ocr": 8.0, "qwen3_vl_2b": 4.4, "qwen2_vl_2b": 4.2, "phi35_vision": 7.7}
    assert {k: config.models[k].vram_gb for k in seed} == seed
    for key, model in config.models.items():
        if model.vllm:
            assert model.vllm.image == "vllm/vllm-openai:v0.32.0", key
            assert model.vllm.host == "127.0.0.1", key
            assert model.vram_gb <= config.gpu.vram_usable_gb
    assert config.models["tesseract"].modes == ("cpu",)
    assert config.models["qwen3_vl_2b"].modes == ("vllm", "local")


def test_dots_ocr_prompts_are_the_published_ones(config):
    tasks = config.models["dots_ocr"].tasks
    layout = tasks["layout_all"].prompt
    assert layout.startswith("Please output the layout information from the PDF image, including each layout element's bbox")
    assert "\n    - Picture: For the 'Picture' category, the text field should be omitted.\n" in layout
    assert layout.endswith("5. Final Output: The entire output must be a single JSON object.\n")
    assert tasks["layout_only"].prompt.endswith("The layout result should be in JSON format.")
    assert tasks["ocr"].prompt == "Extract the text content from this image."
    assert tasks["grounding_ocr"].prompt == (
        "Extract text from the given bounding box on the image (format: [x1, y1, x2, y2]).\nBounding Box:\n")


def test_streamlit_settings_follow_the_config(config):
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "127.0.0.1"
    assert settings["server"]["maxUploadSize"] == config.limits.max_upload_mb


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["models"]["qwen2_vl_2b"]["vllm"].update(prot=8000),
     "models.qwen2_vl_2b.vllm.prot: unknown key"),
    (lambda c: c["models"]["dots_ocr"].pop("vram_gb"),
     "models.dots_ocr.vram_gb: required key is missing"),
    (lambda c: c["models"]["qwen3_vl_2b"]["vllm"].update(port="eighty"),
     "models.qwen3_vl_2b.vllm.port: Input should be a valid integer"),
    (lambda c: c["models"]["qwen3_vl_2b"]["vllm"].update(port=70000),
     "models.qwen3_vl_2b.vllm.port: Input should be less than or equal to 65535"),
    (lambda c: c["limits"].update(max_pages=0), "limits.max_pages: Input should be greater than 0"),
    (lambda c: c.update(default_model="gpt5"), "default_model 'gpt5' is not a key of models"),
    (lambda c: c["models"]["qwen2_vl_2b"]["vllm"].update(port=8002),
     "config.yaml: models.qwen2_vl_2b.vllm.port 8002 is also used by qwen3_vl_2b."),
    (lambda c: c["models"]["tesseract"]["cpu"].update(psm="x"), "models.tesseract.cpu.psm"),
    (lambda c: c["models"]["phi35_vision"]["tasks"]["text"].update(output="pdf"),
     "models.phi35_vision.tasks.text.output: Input should be 'text', 'markdown' or 'layout'"),
    (lambda c: c["gpu"].update(vram_usable_gb=20), "gpu: expected vram_recommended_max_gb <= vram_usable_gb"),
    (lambda c: c["models"]["phi35_vision"].update(requests={"max_tokens": 9000}),
     "models.phi35_vision: requests.max_tokens 9000 leaves no room for the page in vllm.max_model_len 8192"),
    (lambda c: c["models"]["qwen2_vl_2b"]["vllm"].pop("image"),
     "models.qwen2_vl_2b.vllm: needs image (or an endpoint URL for a remote server)"),
    (lambda c: c["models"]["qwen2_vl_2b"]["vllm"].update(host="0.0.0.0"),
     "models.qwen2_vl_2b.vllm: host 0.0.0.0 publishes the model server beyond this machine; set expose: true"),
    (lambda c: c["models"]["qwen2_vl_2b"]["vllm"].update(env={"HF_TOKEN": "hf_abc"}),
     "models.qwen2_vl_2b.vllm: env holds HF_TOKEN: name secrets in env_from_host"),
    (lambda c: c["models"]["qwen2_vl_2b"]["vllm"].update(labels={"io.chatvlmllm.managed": "false"}),
     "models.qwen2_vl_2b.vllm: labels: the io.chatvlmllm.* labels are set by the manager"),
    (lambda c: c["switching"].update(idle_unload_s=-1), "switching.idle_unload_s: Input should be greater"),
    (lambda c: c["models"]["tesseract"].update(description={"en": "CPU", "de": "CPU"}),
     "models.tesseract.description: expected a text, or one per language (en, ru), not"),
    (lambda c: c.update(ui={"language": "fr"}), "ui.language: Input should be 'auto', 'en' or 'ru'"),
])
def test_broken_config_names_the_key(mutate, expected):
    data = raw()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "config.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_model_without_backend_is_refused():
    data = raw()
    del data["models"]["tesseract"]["cpu"]
    data["models"]["tesseract"]["local"] = None
    with pytest.raises(ConfigError, match="at least one"):
        parse_config(data)


def test_first_backend_written_is_the_default_mode():
    data = raw()
    entry = data["models"]["qwen2_vl_2b"]
    data["models"]["qwen2_vl_2b"] = {k: entry[k] for k in ["name", "vram_gb", "tasks", "local", "vllm"]}
    assert parse_config(data).models["qwen2_vl_2b"].modes == ("local", "vllm")
    assert set(MODES) == {"vllm", "local", "cpu"}


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("default_model: x\nmodels: [\n  - a: b\n  c\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        load_config(bad)


def test_missing_file_and_environment_override(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="Cannot read the config file"):
        load_config(tmp_path / "nope.yaml")
    other = tmp_path / "other.yaml"
    data = raw()
    data["default_model"] = "tesseract"
    other.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(other))
    assert load_config().default_model == "tesseract"


def test_cli_stops_on_a_broken_config_with_one_line(tmp_path):
    data = raw()
    data["limits"]["max_upload_mb"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    done = subprocess.run([sys.executable, "cli.py", "--config", str(bad), "models"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: bad.yaml: limits.max_upload_mb: Input should be greater than 0 (got -1)."]


def test_an_exposed_server_is_allowed_when_meant():
    data = raw()
    data["models"]["qwen2_vl_2b"]["vllm"].update(host="0.0.0.0", expose=True)
    assert not parse_config(data).models["qwen2_vl_2b"].vllm.loopback


def test_the_shipped_files_hold_no_secret():
    """Secrets are named, never written: config.yaml and docker-compose.yml pass HF_TOKEN by name."""
    config = parse_config(raw())
    for key, model in config.models.items():
        if model.vllm and not model.vllm.remote:
            assert model.vllm.env_from_host == ["HF_TOKEN"], key
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        assert service["environment"] == ["HF_TOKEN", "VLLM_API_KEY"], name  # names only: values come from the host


def test_texts_people_read_are_in_russian_and_english_and_plain_strings_still_load(config):
    for key, model in config.models.items():
        assert set(model.description.texts) == {"en", "ru"}, key
        assert all(set(task.label.texts) == {"en", "ru"} for task in model.tasks.values()), key
    tesseract = config.models["tesseract"]
    assert tesseract.description.render("ru") == "Встроенный движок на CPU; работает без сети, без GPU и без Docker."
    assert tesseract.description == "Embedded CPU engine; works offline with no GPU and no Docker."  # as a str: English
    assert config.ui.language == "auto"
    data = raw()
    data["models"]["tesseract"]["description"] = "Only one language here"
    plain = parse_config(data).models["tesseract"].description
    assert (plain.render("ru"), plain.render("en")) == ("Only one language here", "Only one language here")


def cp1251_copy(tmp_path):
    """The shipped config as an editor set to the Windows Russian code page would save it."""
    copy = tmp_path / "config.yaml"
    copy.write_bytes((ROOT / "config.yaml").read_text(encoding="utf-8").encode("cp1251"))
    return copy


def test_a_config_not_in_utf8_names_the_encoding_to_save_it_in(tmp_path):
    copy = cp1251_copy(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(copy)
    text = str(err.value)
    assert str(copy) in text and "save the file in the UTF-8 encoding" in text
    assert "\n" not in text


def test_cli_stops_on_a_config_not_in_utf8_with_one_sentence(tmp_path):
    copy = cp1251_copy(tmp_path)
    done = subprocess.run([sys.executable, "cli.py", "--config", str(copy), "models"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {copy} line ") and line.endswith("save the file in the UTF-8 encoding.")


@pytest.mark.parametrize("written, level", [("off", 0), (False, 0), (0, 0), (1, 1), ("2", 2)])
def test_sleep_reads_off_as_yaml_writes_it(written, level):
    data = raw()
    data["switching"]["sleep"] = written
    config = parse_config(data)
    assert config.switching.sleep == level and config.sleep_level("qwen2_vl_2b") == level
    assert yaml.safe_load("sleep: off")["sleep"] is False  # why False must mean off
    data["models"]["dots_ocr"]["vllm"]["sleep"] = 2 if level != 2 else "off"
    assert parse_config(data).sleep_level("dots_ocr") == (2 if level != 2 else 0)  # a model's own wins


def test_sleep_is_refused_for_an_exposed_model_and_skipped_by_the_global_setting():
    data = raw()
    data["models"]["qwen2_vl_2b"]["vllm"].update(host="0.0.0.0", expose=True, sleep=1)
    with pytest.raises(ConfigError, match=r"models\.qwen2_vl_2b\.vllm: sleep 1 cannot be used with expose: true, "
                                          r"because vLLM's /sleep and /wake_up are not behind its API key"):
        parse_config(data)
    del data["models"]["qwen2_vl_2b"]["vllm"]["sleep"]
    data["switching"]["sleep"] = 1
    config = parse_config(data)
    assert config.sleep_level("qwen2_vl_2b") == 0 and config.sleep_level("qwen3_vl_2b") == 1
    with pytest.raises(ConfigError, match=r"switching\.sleep"):
        parse_config({**data, "switching": {**data["switching"], "sleep": 3}})
