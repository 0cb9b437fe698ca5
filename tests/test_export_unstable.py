"""An RLR whose attention logits dwarf the window mask is refused by export's FP32 parity with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rlr_support import TINY

from lineside.cli import main
from lineside.train.checkpoint import save_checkpoint
from lineside.train.models.rlr import RLR

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_unstable_attention_is_refused_with_exit_2(synth_factory, tmp_path: Path, capsys) -> None:
    data = synth_factory(categories=("wood",), n_train=8, n_test_good=2, n_test_defect=2, size=96)
    torch.manual_seed(0)
    model = RLR(TINY, ["wood"], random_init_backbone=True)
    with torch.no_grad():  # logits ~1e5: the -1e4 additive window mask no longer masks, rounding flips the argmax
        for decoder in model.decoders:
            for layer in decoder.layers:
                layer.lca.q_proj.weight.mul_(300.0)
                layer.lca.k_proj.weight.mul_(300.0)
    save_checkpoint(tmp_path / "model.pt", model)
    out = tmp_path / "bundle"
    assert (
        main(["export", str(tmp_path / "model.pt"), "--precision", "fp32", "--data", str(data), "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not reproduce rlr" in err and "numerically unstable" in err and "nothing was written" in err
    assert not out.exists()
