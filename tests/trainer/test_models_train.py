"""Every supported model family trains a LoRA through the real command, on a tiny random pipeline of its
diffusers class: MixGRPO and Flash, two iterations, the exact on-policy bar, and the exported LoRA loads back
through diffusers' ``load_lora_weights`` as it was trained (docs/models.md lists these per model)."""

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_metrics, small_run
from trainer.run import main

pytestmark = pytest.mark.trainer


def tiny_folder(family: str, root):
    from mixgrpo.models.tiny import build_tiny_flux, build_tiny_sd3
    from mixgrpo.models.tiny_flux2 import build_tiny_flux2
    from mixgrpo.models.tiny_qwenimage import build_tiny_qwenimage
    from mixgrpo.models.tiny_zimage import build_tiny_zimage

    builders = {"FLUX.1": build_tiny_flux, "SD3 / SD3.5": build_tiny_sd3, "Z-Image": build_tiny_zimage,
                "Qwen-Image": build_tiny_qwenimage, "FLUX.2 [dev]": build_tiny_flux2,
                "FLUX.2 [klein]": lambda path: build_tiny_flux2(path, "klein")}
    builders[family](root / "model")
    return root / "model"


@pytest.fixture(scope="module", params=["FLUX.1", "SD3 / SD3.5", "Z-Image", "Qwen-Image", "FLUX.2 [dev]",
                                                     "FLUX.2 [klein]"])
def model_folder(request, tmp_path_factory):
    return request.param, tiny_folder(request.param, tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("algo", ["mixgrpo", "flash"])
def test_a_lora_trains_on_policy_and_its_export_loads_back(model_folder, algo, tmp_path):
    from mixgrpo.models import load_flow_model
    from trainer.outputs import lora_layers, load_lora_into

    family, folder = model_folder
    (tmp_path / "eval.txt").write_text("a red circle\n")
    main(small_run(tmp_path, iterations=2, algo=algo, eval_prompts=tmp_path / "eval.txt")
         + ["--model", str(folder), "--resolution", "64", "--shift", "3"])
    run = tmp_path / "runs" / "run"
    rows = run_metrics(run)
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(r["first_max_abs_log_ratio"] < 1e-5 for r in rows), [r["first_max_abs_log_ratio"] for r in rows]
    saved = load_file(str(run / "lora" / "pytorch_lora_weights.safetensors"))
    model = load_flow_model(folder)
    assert type(model).family == family.split(" [")[0]
    load_lora_into(model, run / "lora")  # diffusers' load_lora_weights
    loaded = lora_layers(model)
    assert len(loaded) == len(saved) > 0
    for name, value in loaded.items():
        trained = saved.get(name, saved.get(f"transformer.{name}"))
        assert trained is not None and torch.equal(value.float(), trained.float()), name
    assert any(v.abs().max() > 0 for k, v in saved.items() if "lora_B" in k)  # it moved from its zero init


def test_a_lora_of_one_architecture_is_refused_by_another_with_one_clear_error(tmp_path):
    """The run's LoRA records its architecture; without that record, its module names decide."""
    from mixgrpo.errors import ModelLoadError
    from mixgrpo.models import load_flow_model
    from trainer.outputs import load_lora_into, save_lora

    zimage = load_flow_model(tiny_folder("Z-Image", tmp_path / "z"))
    zimage.add_lora(rank=2)
    save_lora(zimage, tmp_path / "lora", rank=2, alpha=2.0)
    flux = load_flow_model(tiny_folder("FLUX.1", tmp_path / "f"))
    with pytest.raises(ModelLoadError, match="trained on Z-Image, and the model is FLUX.1"):
        load_lora_into(flux, tmp_path / "lora")
    (tmp_path / "lora" / "adapter_config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"LoRA module '.*' is not in this FLUX.1 model \(\d+ of \d+ modules"):
        load_lora_into(flux, tmp_path / "lora")


def test_model_options_reach_the_adapter_from_flags_and_yaml(tmp_path):
    """``--model-option`` (or ``model_options:`` in YAML) sets what the model's adapter takes; flags win."""
    from trainer.config import parse_config
    from trainer.loop import check_model, load_model

    folder = tiny_folder("FLUX.2 [dev]", tmp_path)
    (tmp_path / "recipe.yaml").write_text("model_options: {guidance: 3.0, max_sequence_length: 64}\n")
    cfg = parse_config(["--config", str(tmp_path / "recipe.yaml"), "--model", str(folder), "--resolution", "64",
                        "--model-option", "guidance=2.5", "--model-option", "negative_prompt=blurry, dark"])
    assert cfg.model_options == {"guidance": 2.5, "max_sequence_length": 64, "negative_prompt": "blurry, dark"}
    check_model(cfg)
    model = load_model(cfg)
    assert (model.guidance, model.max_sequence_length, model.negative_prompt) == (2.5, 64, "blurry, dark")


@pytest.mark.parametrize("recipe, family", [("qwen-image-lora.yaml", "Qwen-Image"), ("flux2-dev-lora.yaml", "FLUX.2 [dev]"),
                                            ("flux2-klein-base-lora.yaml", "FLUX.2 [klein]"),
                                            ("zimage-lora.yaml", "Z-Image")])
def test_each_models_recipe_passes_the_models_checks(recipe, family, tmp_path):
    """The recipe with a folder of its model's pipeline class: resolution and model options accepted before loading."""
    from pathlib import Path

    from trainer.config import parse_config
    from trainer.loop import check_model

    recipe = Path(__file__).resolve().parents[2] / "trainer" / "configs" / recipe
    cfg = parse_config(["--config", str(recipe), "--model", str(tiny_folder(family, tmp_path))])
    assert check_model(cfg).family == family.split(" [")[0]
    assert cfg.mixed_precision == "bf16" and cfg.resolution % check_model(cfg).resolution_multiple == 0
