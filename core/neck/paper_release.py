"""Importing the paper's twelve released files (``d{1,2,3}_{1..4}.pth.tar``) as neckkit checkpoints.

Each released file holds the ELIC codec under ``state_dict`` (the paper's ``ELIC_LLM`` names, renamed
onto CompressAI's ``Elic2022Chandelier`` by :func:`bridging_to_chandelier`) and the neck under
``adapter`` (the names :class:`~neckkit.neck.transform.TransformNeck` uses). The necks were trained behind CLIP
ViT-L/14 entered at block 2 with the final LayerNorm applied twice, so the imported metadata names
``clip-l`` with ``double_ln_post=True``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from neckkit.config.paper import NeckConfig, ScenarioConfig
from neckkit.errors import NeckkitError
from neckkit.loading.codec_weights import entropy_tables, extract_state_dict, read_checkpoint
from neckkit.loading.weights import seeded_init, state_dict_mismatches
from neckkit.neck.checkpoint import CheckpointMeta, ComponentRef, NeckShape, load_codec_weights, save_checkpoint
from neckkit.neck.transform import TransformNeck

SCENARIOS = ("d1", "d2", "d3")
PAPER_ENCODER = "clip-l"  # with double_ln_post=True: the head the released necks were trained with
CODEC_KEY, NECK_KEY = "state_dict", "adapter"
_SCENARIO_IN_NAME = re.compile(r"(?<![a-z0-9])(d[123])(?![0-9])", re.IGNORECASE)
_LAMBDA_IN_NAME = re.compile(r"(?<![0-9.])(0\.0(?:04|08|16|32))(?![0-9])")
_RELEASE_NAME = re.compile(r"^d([123])_([1-4])$")  # the release's d<scenario>_<quality>
_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.")


def release_stem(file: str | os.PathLike[str]) -> str:
    """``d1_1.pth.tar`` -> ``d1_1``: the file name without ``.tar`` and ``.pth``/``.pt``."""
    name = Path(file).name
    for suffix in (".tar", ".pth", ".pt"):
        name = name.removesuffix(suffix)
    return name


def scenario_from_name(file: str | os.PathLike[str]) -> tuple[str | None, float | None]:
    """Scenario and lambda read from a file name, each None where the name does not say.

    ``d1``/``d2``/``d3`` as a word and a lambda written out (0.004, 0.008, 0.016, 0.032), e.g.
    ``elic_d2_lambda0.016.pth``; or the release's own names ``d<s>_<q>``, whose quality ``q`` = 1..4
    is read as the paper's lambdas in increasing order (inferred: quality 1 is the lowest rate).
    """
    stem = release_stem(file)
    release = _RELEASE_NAME.match(stem)
    if release:
        return f"d{release.group(1)}", ScenarioConfig().lambdas[int(release.group(2)) - 1]
    scenarios = {match.lower() for match in _SCENARIO_IN_NAME.findall(stem)}
    lambdas = {float(match) for match in _LAMBDA_IN_NAME.findall(stem)}
    return (scenarios.pop() if len(scenarios) == 1 else None, lambdas.pop() if len(lambdas) == 1 else None)


def released_epoch(content: Mapping[str, object]) -> int:
    """The file's own ``epoch`` entry (e.g. 59 in the release), 0 when it has none or not a count."""
    epoch = content.get("epoch")
    if isinstance(epoch, Tensor) and epoch.numel() == 1:
        epoch = epoch.item()
    if isinstance(epoch, bool) or not isinstance(epoch, int | float) or epoch != int(epoch) or epoch < 0:
        return 0
    return int(epoch)


def _released_parts(file: Path) -> tuple[dict[str, Tensor], dict[str, Tensor], int]:
    """(codec state in Chandelier names, neck state, epoch) of a released file, or one error line."""
    from neckkit.plugins.codecs.compressai_codecs import bridging_to_chandelier, is_bridging_layout

    content = read_checkpoint(file)
    if not isinstance(content, Mapping):
        raise NeckkitError(f"{file} is not one of the paper's released files: it holds a {type(content).__name__}")
    missing = [repr(key) for key in (CODEC_KEY, NECK_KEY) if not isinstance(content.get(key), Mapping)]
    if missing:
        raise NeckkitError(
            f"{file} is not one of the paper's released files: it has no {' and no '.join(missing)} entry "
            f"(they hold the ELIC codec under {CODEC_KEY!r} and the neck under {NECK_KEY!r})"
        )
    codec_state = extract_state_dict(content[CODEC_KEY], source=f"{file} {CODEC_KEY!r}")
    if not is_bridging_layout(codec_state):
        raise NeckkitError(f"{file}: its {CODEC_KEY!r} is not the paper's ELIC (no h_a./cc_transforms. keys)")
    neck_state = extract_state_dict(content[NECK_KEY], source=f"{file} {NECK_KEY!r}")
    return bridging_to_chandelier(codec_state), neck_state, released_epoch(content)


def _neck_for(neck_state: Mapping[str, Tensor], source: str) -> TransformNeck:
    """The neck the tensors describe (num_heads: the paper's 16), with them loaded strictly."""
    needed = [key for key in ("trans_latent_dim.weight", "positional_embedding") if key not in neck_state]
    if needed:
        raise NeckkitError(f"{source} is not a transform-neck: missing {', '.join(needed)}")
    width, latent_channels = neck_state["trans_latent_dim.weight"].shape
    class_token = "class_embedding" in neck_state
    cells = neck_state["positional_embedding"].shape[0] - int(class_token)
    grid = math.isqrt(max(cells, 0))
    if grid < 1 or grid * grid != cells:
        raise NeckkitError(f"{source}: positional_embedding has {cells} patch rows, not a square grid")
    blocks = {int(match.group(1)) for key in neck_state if (match := _BLOCK.match(key))}
    fc = neck_state.get("transformer.resblocks.0.mlp.c_fc.weight")
    config = NeckConfig(
        num_blocks=max(blocks) + 1 if blocks else 1,
        mlp_ratio=fc.shape[0] / width if fc is not None else NeckConfig().mlp_ratio,
    )
    with seeded_init(0):
        neck = TransformNeck(int(latent_channels), int(width), grid, class_token, config)
    problems = state_dict_mismatches(neck.state_dict(), neck_state)
    if problems:
        raise NeckkitError(f"{source} does not fit a transform-neck: {'; '.join(problems)}")
    neck.load_state_dict(neck_state, strict=True)
    return neck


def _codec_ref(codec_state: dict[str, Tensor], source: str) -> tuple[ComponentRef, str | None]:
    """Load the codec state into ELIC (the paper's sizes, or the tiny ones): its ref and tables in use."""
    from neckkit.bitstream.container import codec_fingerprint
    from neckkit.plugins.codecs.compressai_codecs import TINY_ELIC, build_elic

    first = codec_state.get("g_a.0.weight")
    tiny = first is not None and first.shape[0] == TINY_ELIC.N
    codec = build_elic(tiny=tiny, random_init=not tiny)
    load_codec_weights(codec, codec_state, source)
    ref = ComponentRef(name="elic", options={"tiny": True} if tiny else {}, fingerprint=codec_fingerprint(codec))
    return ref, entropy_tables(codec)


def import_release(
    file: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    scenario: str | None = None,
    rate_lambda: float | None = None,
) -> Path:
    """Convert one released file into the checkpoint folder ``out_dir``; return its path.

    ``scenario`` / ``rate_lambda`` default to what the file name says (:func:`scenario_from_name`),
    else ``d1`` and no lambda. Everything is checked before anything is written, and the write is
    atomic, so a failed import leaves no folder behind.
    """
    file = Path(file)
    if scenario is not None and scenario not in SCENARIOS:
        raise NeckkitError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if rate_lambda is not None and not rate_lambda > 0:
        raise NeckkitError(f"lambda must be positive, got {rate_lambda}")
    named_scenario, named_lambda = scenario_from_name(file)
    codec_state, neck_state, epoch = _released_parts(file)
    neck = _neck_for(neck_state, f"{file} {NECK_KEY!r}")
    codec_ref, tables = _codec_ref(codec_state, f"{file} {CODEC_KEY!r}")
    meta = CheckpointMeta(
        codec=codec_ref,
        codec_tables=tables,
        epoch=epoch,
        encoder=ComponentRef(name=PAPER_ENCODER, options={"double_ln_post": True}),
        entry_layer=neck.config.entry_layer,
        neck=NeckShape.of_neck(neck),
        scenario=scenario or named_scenario or "d1",
        rate_lambda=rate_lambda if rate_lambda is not None else named_lambda,
        source=f"imported from {file.name}",
    )
    return save_checkpoint(out_dir, meta, neck_state, codec_state)

