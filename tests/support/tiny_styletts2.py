"""A tiny, randomly initialised StyleTTS2 model in the upstream on-disk layout.

    <StyleTTS2 venv python> tests/support/tiny_styletts2.py OUT_DIR

No weights can be downloaded here, so the tests build their own: small random ASR aligner,
JDC pitch model and 1-layer PL-BERT, and a StyleTTS2 checkpoint whose shapes the package
hard-codes (style_dim 128, a 512-channel HiFi-GAN decoder: ~87M parameters). The diffusion
transformer gets small weights (default ones make the sampler diverge) and the style
encoders' spectral norms are converged, as training leaves them. Files and config.yml are
laid out as in the upstream repository, which is what deployments/styletts2.py loads:

    config.yml  epochs_2nd_00020.pth  Utils/ASR/{config.yml,epoch_00080.pth}
    Utils/JDC/bst.t7  Utils/PLBERT/{config.yml,step_1000000.t7}

It needs torch + styletts2, which live only in the engine's venv (scripts/engine-env.sh
styletts2), so tests call `build()`, which runs this file under that interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECKPOINT = "epochs_2nd_00020.pth"
DONE = ".built"


def build(out: Path, python: str, timeout: float = 600) -> Path:
    """Build the model into `out` with the StyleTTS2 venv's interpreter (once: a finished
    build leaves a marker). Returns the model directory."""
    if not (out / DONE).exists():
        subprocess.run([python, __file__, str(out)], check=True, timeout=timeout)
    return out


def _build(out: Path, seed: int = 0) -> None:
    import torch
    import yaml
    from styletts2 import models, utils
    from styletts2.Utils.ASR.models import ASRCNN
    from styletts2.Utils.JDC.model import JDCNet
    from styletts2.Utils.PLBERT.util import load_plbert
    from transformers import AlbertConfig, AlbertModel

    torch.manual_seed(seed)
    asr_dir, jdc_dir, bert_dir = out / "Utils/ASR", out / "Utils/JDC", out / "Utils/PLBERT"
    for d in (asr_dir, jdc_dir, bert_dir):
        d.mkdir(parents=True, exist_ok=True)

    asr_cfg = {"model_params": {"input_dim": 80, "hidden_dim": 16, "n_token": 178, "token_embedding_dim": 16}}
    (asr_dir / "config.yml").write_text(yaml.safe_dump(asr_cfg))
    aligner = ASRCNN(**asr_cfg["model_params"])
    torch.save({"model": aligner.state_dict()}, asr_dir / "epoch_00080.pth")
    pitch = JDCNet(num_class=1, seq_len=192)
    torch.save({"net": pitch.state_dict()}, jdc_dir / "bst.t7")

    bert_cfg = {"model_params": {"vocab_size": 178, "hidden_size": 32, "num_attention_heads": 2,
                                 "intermediate_size": 64, "max_position_embeddings": 512,
                                 "num_hidden_layers": 1, "dropout": 0.1}}
    (bert_dir / "config.yml").write_text(yaml.safe_dump(bert_cfg))
    albert = AlbertModel(AlbertConfig(**bert_cfg["model_params"]))
    state = {"module.encoder." + k: v for k, v in albert.state_dict().items()}
    state["module.encoder.embeddings.position_ids"] = torch.arange(512)[None]  # load_plbert deletes it
    torch.save({"net": state}, bert_dir / "step_1000000.t7")

    params = {
        "multispeaker": True, "dim_in": 64, "hidden_dim": 512, "max_conv_dim": 512, "n_layer": 1,
        "n_mels": 80, "n_token": 178, "max_dur": 4, "style_dim": 128, "dropout": 0.2,
        "decoder": {"type": "hifigan", "resblock_kernel_sizes": [3], "upsample_rates": [10, 5, 3, 2],
                    "upsample_initial_channel": 512, "resblock_dilation_sizes": [[1, 3, 5]],
                    "upsample_kernel_sizes": [20, 10, 6, 4]},
        "slm": {"model": "unused", "sr": 16000, "hidden": 8, "nlayers": 1, "initial_channel": 4},
        "diffusion": {"embedding_mask_proba": 0.1,
                      "transformer": {"num_layers": 1, "num_heads": 2, "head_features": 16, "multiplier": 1},
                      "dist": {"sigma_data": 0.2, "estimate_sigma_data": True, "mean": -3.0, "std": 1.0}},
    }
    # As the upstream Models/LibriTTS/config.yml: auxiliary paths relative to the repo root.
    config = {
        "ASR_config": "Utils/ASR/config.yml",
        "ASR_path": "Utils/ASR/epoch_00080.pth",
        "F0_path": "Utils/JDC/bst.t7",
        "PLBERT_dir": "Utils/PLBERT/",
        "preprocess_params": {"sr": 24000, "spect_params": {"n_fft": 2048, "win_length": 1200, "hop_length": 300}},
        "model_params": params,
    }
    (out / "config.yml").write_text(yaml.safe_dump(config))

    plbert = load_plbert(None, config_path=str(bert_dir / "config.yml"),
                         checkpoint_path=str(bert_dir / "step_1000000.t7"))
    net = models.build_model(utils.recursive_munch(params), aligner, pitch, plbert)
    # Default-initialised, the diffusion transformer makes the sampler diverge; small
    # weights keep it stable while its output (and so embedding_scale) still matters.
    for p in net["diffusion"].parameters():
        p.data.normal_(0.0, 0.02)
    # The style encoders' convolutions are spectral-normalised: their weights are divided by
    # a power-iteration estimate of their largest singular value, which only training-mode
    # forward passes refine. Fresh, it is far off and every block multiplies the signal by
    # ~1e4 (a style vector of inf). Run the iteration to convergence, as training would.
    with torch.no_grad():
        mel = torch.randn(1, 1, 80, 192)
        for name in ("style_encoder", "predictor_encoder"):
            net[name].train()
            for _ in range(30):
                net[name](mel)
            net[name].eval()
    parts = ["bert", "bert_encoder", "predictor", "decoder", "text_encoder", "predictor_encoder",
             "style_encoder", "diffusion"]
    torch.save({"net": {k: net[k].state_dict() for k in parts}}, out / CHECKPOINT)
    (out / DONE).write_text("ok\n")


if __name__ == "__main__":
    _build(Path(sys.argv[1]))
