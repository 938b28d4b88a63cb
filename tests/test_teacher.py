"""Distillation from another trained model (``train.teacher``): a narrower student trains towards
a wider teacher's output, each model given the input it takes, and the config refuses what it
cannot rebuild."""

import pytest
import torch

from autoenc.checkpoint import pack, read_checkpoint, save_checkpoint
from autoenc.config import load
from autoenc.data import ingest, with_noise_level
from autoenc.losses import LOSSES
from autoenc.models import get_model
from autoenc.runtime.infer import ENSEMBLE_VIEWS
from autoenc.train import dihedral_mean, fit, load_teacher, objective
from conftest import REPO, photo_sources


def _teacher(tmp_path, **kwargs):
    """A saved checkpoint of a unet_dae whose output differs from its input (and from zero)."""
    torch.manual_seed(1)
    model = get_model("unet_dae", **kwargs)
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    cfg = load(REPO / "configs/tiny-image.yaml")
    save_checkpoint(tmp_path / "teacher.pt", pack(model, {k: v for k, v in kwargs.items()}, cfg))
    return tmp_path / "teacher.pt", model.eval()


def test_the_target_blends_the_teachers_output_and_the_teacher_gets_its_own_input(tmp_path):
    path, wide = _teacher(tmp_path, channels=1, width=12, levels=2, noise_level_input=True)
    teacher = load_teacher(path, get_model("unet_dae", channels=1, width=8, levels=2))
    assert not any(p.requires_grad for p in teacher.parameters())
    torch.manual_seed(0)
    student = get_model("unet_dae", channels=1, width=8, levels=2)  # blind: no noise-level plane
    noisy, clean = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    mse = LOSSES["l2"]
    with torch.no_grad():
        told = wide(with_noise_level(noisy))  # the teacher reads the plane the student does not
        out = student(noisy)
    for w in (1.0, 0.5):
        loss = objective(student, (noisy, clean), teacher, mse, 16000, w)
        assert loss.item() == pytest.approx(mse(out, clean + w * (told - clean)).item(), rel=1e-5)
    assert objective(student, (noisy, clean), teacher, mse, 16000, 0.5).item() != pytest.approx(mse(out, clean).item(), rel=1e-3)
    assert objective(student, (noisy, clean), teacher, mse, 16000, 0.0).item() == pytest.approx(mse(out, clean).item())
    loss = objective(student, (noisy, clean), teacher, mse, 16000, 1.0)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and student.tail.weight.grad is not None


def test_teacher_views_average_the_teacher_over_flips_and_rotations(tmp_path):
    path, wide = _teacher(tmp_path, channels=1, width=12, levels=2, noise_level_input=True)
    teacher = load_teacher(path, get_model("unet_dae", channels=1, width=8, levels=2))
    student = get_model("unet_dae", channels=1, width=8, levels=2, noise_level_input=True)
    torch.manual_seed(0)
    noisy, clean = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    x = with_noise_level(noisy)
    assert len(set(ENSEMBLE_VIEWS)) == 8 and ENSEMBLE_VIEWS[0] == (0, False)
    with torch.no_grad():
        assert torch.equal(dihedral_mean(wide, x, 1), wide(x))
        views = [wide(x), wide(x.flip(3)).flip(3), torch.rot90(wide(torch.rot90(x, 1, (2, 3))), -1, (2, 3))]
        assert torch.allclose(dihedral_mean(wide, x, 3), sum(views) / 3, atol=1e-6)
        assert (dihedral_mean(wide, x, 8) - wide(x)).abs().max() > 1e-4  # the teacher is not equivariant: views differ
        identity = lambda t: t[:, :1]  # noqa: E731  an equivariant "model": every view gives the input back
        assert torch.allclose(dihedral_mean(identity, x, 8), noisy, atol=1e-6)
        mse, out = LOSSES["l2"], student(x)
    loss = objective(student, (noisy, clean), teacher, mse, 16000, 1.0, 3)
    assert loss.item() == pytest.approx(mse(out, sum(views) / 3).item(), rel=1e-5)
    with pytest.raises(ValueError, match="image batches"):
        dihedral_mean(wide, torch.rand(2, 1, 64), 2)


def test_a_teacher_of_other_channels_is_refused(tmp_path):
    path, _ = _teacher(tmp_path, channels=3, width=8, levels=2)
    with pytest.raises(ValueError, match="3 channel"):
        load_teacher(path, get_model("unet_dae", channels=1, width=8, levels=2))


@pytest.mark.parametrize("sets,match", [(["train.teacher=t.onnx"], "not a checkpoint"), (["train.teacher=t.pt", "train.quantization_aware=true", "train.distill=true", "train.init_from=s.pt"], "one"),
                                       (["train.teacher_views=4"], "give train.teacher"), (["train.teacher=t.pt", "train.teacher_views=9"], "less than or equal")])
def test_the_config_refuses_a_teacher_it_cannot_use(sets, match):
    with pytest.raises(ValueError, match=match):
        load(REPO / "configs/tiny-image.yaml", sets)


def test_a_student_distils_through_fit(tmp_path, caplog):
    root = photo_sources(tmp_path / "photos", 3, 1)
    base = ["data.val_files=[]", "data.val_sources=[b]", "data.patches_per_epoch=64", "train.epochs=1", f"data.root={root}"]
    wide = load(REPO / "configs/tiny-image.yaml", [*base, "model.kwargs.width=12"])
    ingest(root, wide.data, tmp_path / "manifest.csv")
    teacher = fit(wide, root, tmp_path / "manifest.csv", tmp_path / "teacher")
    cfg = load(REPO / "configs/tiny-image.yaml", [*base, f"train.teacher={teacher}", "train.teacher_weight=0.5"])
    assert cfg.hash() != load(REPO / "configs/tiny-image.yaml", base).hash()
    assert load(REPO / "configs/tiny-image.yaml", base).hash() == load(REPO / "configs/tiny-image.yaml", [*base, "train.teacher_weight=1.0"]).hash()  # the defaults leave old hashes alone
    with caplog.at_level("INFO"):
        best = read_checkpoint(fit(cfg, root, tmp_path / "manifest.csv", tmp_path / "student"))
    assert any("distilling from" in r.message and str(teacher) in r.message and "0.50" in r.message for r in caplog.records)
    assert best["kwargs"]["width"] == 8 and best["config"]["train"]["teacher"] == str(teacher)
