"""Tiny, randomly initialised XTTS v2 checkpoints in the real fine-tune layout.

    <XTTS python> tests/support/tiny_xtts.py OUT_ROOT NAME[:SEED[:LANG,LANG...][:speakers]] ...

writes OUT_ROOT/NAME/{model.pth, config.json, vocab.json[, speakers_xtts.pth]} for each
spec, loadable by coqui-tts's own `Xtts.load_checkpoint` (and so by deployments.xtts).
It needs torch + coqui-tts, so tests (which run where coqui is absent) call `build()`,
which runs this file under the XTTS environment's interpreter.

What keeps them tiny and fast (facts from shared/recipes/tiny_xtts.py):
- a 2-layer, 64-wide GPT (`decoder_input_dim` must equal it; `d_vector_dim` stays 512);
- `gpt_code_stride_len` 256 instead of 1024: each audio token is 256 samples, so the
  full-size HiFi-GAN decoder (XttsArgs cannot shrink it) has 4x less to render per token;
- `gpt_max_audio_tokens` caps an utterance (a random GPT rarely says stop):
  MAX_AUDIO_S = MAX_AUDIO_TOKENS * CODE_STRIDE / 22050;
- a small `gpt_max_text_tokens`, so long text must be split to fit;
- a character-level tokenizer with XTTS's special tokens ([START], [STOP], [SPACE],
  [UNK], [lang]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MAX_AUDIO_TOKENS = 48
CODE_STRIDE = 256
MAX_TEXT_TOKENS = 120
MAX_AUDIO_S = MAX_AUDIO_TOKENS * CODE_STRIDE / 22050
LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi"]
SPEAKER = "Ana Florence"
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-áéíóúàèìòùâêîôûäëïöüçñßøåæœ"


def build(out_root: Path, python: str, specs: list[str], timeout: float = 600) -> dict[str, Path]:
    """Build the specs with the XTTS interpreter; returns name -> model directory."""
    out_root.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, __file__, str(out_root), *specs], check=True, timeout=timeout)
    return {spec.split(":")[0]: out_root / spec.split(":")[0] for spec in specs}


def _build_one(out: Path, seed: int, languages: list[str], speakers: bool) -> None:
    import numpy as np
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{lang}]" for lang in LANGUAGES]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(special + list(CHARS))}, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    tok.save(str(out / "vocab.json"))

    args = XttsArgs(
        gpt_layers=2, gpt_n_model_channels=64, gpt_n_heads=4,
        gpt_max_audio_tokens=MAX_AUDIO_TOKENS, gpt_max_text_tokens=MAX_TEXT_TOKENS, gpt_max_prompt_tokens=70,
        gpt_num_audio_tokens=1026, gpt_start_audio_token=1024, gpt_stop_audio_token=1025,
        gpt_code_stride_len=CODE_STRIDE, gpt_use_perceiver_resampler=True,
        decoder_input_dim=64, d_vector_dim=512,
    )
    config = XttsConfig(model_args=args, languages=languages)
    config.model_args.tokenizer_file = str(out / "vocab.json")
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(out / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    if speakers:
        model.eval()
        ref = torch.from_numpy((0.1 * np.random.default_rng(seed).standard_normal(22050 * 2)).astype("float32"))[None]
        latent = model.get_gpt_cond_latents(ref, 22050, length=6, chunk_length=6)
        embedding = model.get_speaker_embedding(ref, 22050)
        torch.save({SPEAKER: {"gpt_cond_latent": latent, "speaker_embedding": embedding}}, out / "speakers_xtts.pth")


def main(argv: list[str]) -> None:
    root = Path(argv[0])
    for spec in argv[1:]:
        name, seed, langs, extra = (spec.split(":") + ["", "", ""])[:4]
        _build_one(root / name, int(seed or 0), langs.split(",") if langs else LANGUAGES, extra == "speakers")
        print(f"built {root / name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
