"""Shared test fixtures."""

from __future__ import annotations

import pytest

# --- tiny real ONNX bundle (calibrate / deploy tests) -------------------------------------------


def _export_highpass_onnx(path, size: tuple[int, int]) -> None:
    """Export a real, tiny anomaly graph: uint8 NHWC BGR -> |image - local mean| map, top-1% score."""
    import torch
    from torch import nn

    class HighPass(nn.Module):
        top_k = max(1, size[0] * size[1] // 100)

        def forward(self, images: torch.Tensor):  # (N, H, W, 3) uint8
            x = images.float().permute(0, 3, 1, 2) / 255.0  # (N, 3, H, W), cast first: TensorRT has no uint8 Transpose
            blur = nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
            amap = (x - blur).abs().mean(dim=1, keepdim=True)  # (N, 1, H, W)
            flat = amap.flatten(1)  # (N, H*W)
            score = flat.topk(self.top_k, dim=1).values.mean(dim=1)  # (N,)
            return amap, score

    torch.set_num_threads(1)
    dummy = torch.zeros((1, *size, 3), dtype=torch.uint8)
    torch.onnx.export(
        HighPass().eval(),
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["anomaly_map", "score"],
        dynamic_axes={"image": {0: "batch"}, "anomaly_map": {0: "batch"}, "score": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


@pytest.fixture(scope="session")
def tiny_bundle_factory(tmp_path_factory):
    """Make a real bundle (tiny high-pass ONNX graph, dynamic batch) with the given classes."""
    from lineside.bundle import Manifest, TensorSpec, write_bundle

    root = tmp_path_factory.mktemp("tiny_bundles")
    size = (64, 64)
    onnx_path = root / "highpass.onnx"
    _export_highpass_onnx(onnx_path, size)

    def make(out, classes=("part",), extra_files=None):
        manifest = Manifest(
            model="highpass",
            preset="test",
            classes=tuple(classes),
            input_size=size,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            precision="fp32",
            inputs=(TensorSpec("image", ("batch", *size, 3), "uint8"),),
            outputs=(
                TensorSpec("anomaly_map", ("batch", 1, *size), "float32"),
                TensorSpec("score", ("batch",), "float32"),
            ),
            dynamic_batch=True,
        )
        return write_bundle(out, manifest, {"model.onnx": onnx_path, **(extra_files or {})})

    return make


# --- synthetic defect data set (data readers, training, eval tests) ------------------------------


@pytest.fixture(scope="session")
def synth_factory(tmp_path_factory):
    """Generate (once per argument set) a small synthetic MVTec-layout data set; returns its root Path.

    Usage: `root = synth_factory(categories=("washer",), n_train=8, n_test_good=4, n_test_defect=4, size=128)`.
    """
    from lineside.synth import generate_dataset

    made = {}

    def make(categories=("washer", "mesh"), n_train=8, n_test_good=4, n_test_defect=4, size=128, seed=0):
        key = (tuple(categories), n_train, n_test_good, n_test_defect, size, seed)
        if key not in made:
            out = tmp_path_factory.mktemp("synth") / "data"
            generate_dataset(
                out,
                categories=list(categories),
                seed=seed,
                n_train=n_train,
                n_test_good=n_test_good,
                n_test_defect=n_test_defect,
                size=size,
                progress=False,
            )
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def synth_data(synth_factory):
    """A small synthetic data set: washer + mesh, 8 train / 4 good / 4 defect test images each, 128 px."""
    return synth_factory()


# --- tiny trained runs (export and bench tests) --------------------------------------------------


TINY_EPOCHS = {"crr": 6, "rlr": 200}  # enough to rank clearly, so FP16/INT8 noise cannot swap near-tied scores


@pytest.fixture(scope="session")
def export_data(synth_factory):
    """Synthetic data for export tests: washer + mesh, 8 train / 16 good / 16 defect test images each, 128 px.

    16 + 16 test images per category make one swapped good/defect pair cost 0.2 I-AUROC points (mean of
    two categories), fine enough to check the 0.5-point INT8 and 0.1-point FP16 limits.
    """
    return synth_factory(n_train=8, n_test_good=16, n_test_defect=16)


@pytest.fixture(scope="session")
def tiny_run_factory(tmp_path_factory, export_data):
    """Train (once per model name) a real tiny-preset model on `export_data`; returns RUN/model.pt.

    CRR trains 6 reconstruction epochs (+ its segmentation stage), RLR 200 epochs of two batches each.
    """
    made = {}

    def make(name: str):
        if name not in made:
            import torch

            from lineside.data import open_dataset
            from lineside.train.data import load_train_data
            from lineside.train.loop import LoopOptions, fit
            from lineside.train.models.base import build_model

            torch.set_num_threads(2)
            torch.manual_seed(0)  # decoder init must not depend on how much of the global RNG earlier tests used
            dataset = open_dataset(export_data)
            model = build_model(name, "tiny", dataset.categories)
            # as `lineside train` does: 2 of each category's 8 good images are held out for export's gates
            data, model.held_out = load_train_data(dataset, dataset.categories, model.input_size, progress=False)
            out = tmp_path_factory.mktemp(f"run_{name}")
            fit(model, data, LoopOptions(out_dir=out, epochs=TINY_EPOCHS[name], progress=False))
            made[name] = out / "model.pt"
        return made[name]

    return make
