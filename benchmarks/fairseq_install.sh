#!/usr/bin/env bash
# fairseq, the peer toolkit of benchmarks/fairseq_peer.py: bash benchmarks/fairseq_install.sh [ROOT]
# Reproducible CPU install of fairseq (0.12.2 = newest fairseq on PyPI; 0.12.3 was
# never published there) into ROOT/venv (default /tmp/fsq) on Python 3.11, torch 2.13.0 (CPU).
set -euo pipefail
ROOT=${1:-/tmp/fsq}   # where the venv and the patched source go
VENV=$ROOT/venv
N="nice -n 19"  # gentle on a machine that may be timing something

$N python3 -m venv "$VENV"
PIP="$N $VENV/bin/pip"
$PIP install "pip<24.1"                 # omegaconf 2.0.6 metadata is rejected by pip>=24.1
$PIP install torch==2.13.0 "numpy<2" cython wheel

# --- fetch the official sdist and patch it -------------------------------------------
mkdir -p "$ROOT/dl" "$ROOT/src"
$PIP download --no-deps --no-build-isolation --no-binary fairseq -d "$ROOT/dl" fairseq==0.12.2
rm -rf "$ROOT/src/fairseq-0.12.2"
tar -xzf "$ROOT/dl/fairseq-0.12.2.tar.gz" -C "$ROOT/src"
cd "$ROOT/src/fairseq-0.12.2"

# (1) Python 3.11: dataclass instances as defaults are "mutable defaults" -> default_factory
FILES="fairseq/dataclass/configs.py
fairseq/models/transformer/transformer_config.py
fairseq/examples/data2vec/models/data2vec_text.py
fairseq/examples/speech_recognition/new/infer.py
fairseq/examples/wav2vec/unsupervised/w2vu_generate.py
fairseq/examples/wav2vec/unsupervised/tasks/unpaired_audio_text.py
fairseq/examples/wav2vec/unsupervised/models/wav2vec_u.py"
for f in $FILES; do
  sed -i -E \
    -e 's/field\(default=([A-Z][A-Za-z0-9_]*)\(\)\)/field(default_factory=\1)/' \
    -e 's/^(\s+\w+\s*:\s*[A-Za-z0-9_]+\s*=\s*)([A-Z][A-Za-z0-9_]*)\(\)\s*$/\1field(default_factory=\2)/' \
    "$f"
done
sed -i 's/^from dataclasses import dataclass$/from dataclasses import dataclass, field/' \
  fairseq/examples/wav2vec/unsupervised/models/wav2vec_u.py

# (1b) ...and hydra_init() must then take the default from default_factory
sed -i 's/^        v = FairseqConfig.__dataclass_fields__\[k\].default$/        v = FairseqConfig.__dataclass_fields__[k]; v = v.default_factory() if callable(v.default_factory) else v.default/' \
  fairseq/dataclass/initialize.py
grep -q 'v = v.default_factory()' fairseq/dataclass/initialize.py

# (2) torch>=2.6 defaults torch.load(weights_only=True); fairseq checkpoints hold argparse/omegaconf objects
sed -i 's/state = torch.load(f, map_location=torch.device("cpu"))/state = torch.load(f, map_location=torch.device("cpu"), weights_only=False)/' \
  fairseq/checkpoint_utils.py
sed -i '/new_state = torch.load($/{n;s/^            f,$/            f, weights_only=False,/}' fairseq/checkpoint_utils.py  # load_ema_from_checkpoint
test "$(grep -c 'weights_only=False' fairseq/checkpoint_utils.py)" = 2

# (2b) torch>=1.13 changed torch._transformer_encoder_layer_fwd (needs mask_type) -> inference crashes with
#      "RuntimeError: Mask Type should be defined" (fairseq#4858). Disable the BetterTransformer
#      inference fast path (both the encoder and layer gates); the regular path gives the same results.
sed -i 's/^            self\.BT_version$/            False  # BT fast path disabled (torch>=1.13, fairseq#4858)/' fairseq/modules/transformer_layer.py
sed -i 's/^            BT_version$/            False  # BT fast path disabled (torch>=1.13, fairseq#4858)/' fairseq/models/transformer/transformer_encoder.py
grep -q 'BT fast path disabled' fairseq/modules/transformer_layer.py
grep -q 'BT fast path disabled' fairseq/models/transformer/transformer_encoder.py

# (3) sdist ships examples/ only under fairseq/examples; setup.py points at top-level examples/
sed -i 's#"examples/operators/#"fairseq/examples/operators/#' setup.py
# (4) the PyPI sdist omits fairseq/clib/libbase and fairseq/clib/libnat sources: skip those
#     two torch C++ extensions (only BASE layers / non-autoregressive Levenshtein models use them)
$VENV/bin/python - <<'PY'
import re
s = open("setup.py").read()
for name in ("fairseq.libbase", "fairseq.libnat"):
    s, n = re.subn(r'\n\s*cpp_extension\.CppExtension\(\s*"%s",\s*sources=\[[^\]]*\],\s*\),?' % re.escape(name), "", s)
    assert n == 1, name
open("setup.py", "w").write(s)
PY

# --- build & install ------------------------------------------------------------------
# torchaudio is a hard dependency in setup.py but no torchaudio release matches torch 2.13,
# and installing one would drag in another torch; it is only used by the speech tasks.
$PIP install "hydra-core==1.0.7" "omegaconf==2.0.6" cffi regex "sacrebleu>=1.4.12" tqdm bitarray
MAX_JOBS=1 $PIP install --no-build-isolation --no-deps .

# (5) hydra-core 1.0.7 has the same Python-3.11 mutable-default problem in hydra/conf/__init__.py
HYDRA_CONF=$($VENV/bin/python -c 'import importlib.util as u; print(u.find_spec("hydra").submodule_search_locations[0])')/conf/__init__.py
sed -i -E 's/^(\s+\w+\s*:\s*[A-Za-z0-9_]+\s*=\s*)([A-Z][A-Za-z0-9_]*)\(\)\s*$/\1field(default_factory=\2)/' "$HYDRA_CONF"
