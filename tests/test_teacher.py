"""The frozen FaceNet teacher: frozen for good, pretrained weights from the hub cache, the classifier."""

import json

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from ikd.config import apply_overrides
from ikd.data import schema
from ikd.data.views import TeacherViews
from ikd.errors import UserError
from ikd.face.teacher import INFO, fit_classifier, load_teacher, prepare_teacher
from ikd.models import teacher as teacher_module
from ikd.models.teacher import augment, standardize


def _faces(count, size=80, identities=2, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % identities
    faces = rng.integers(0, 255, (count, 3, size, size), dtype=np.uint8)
    faces[labels == 1, 0] //= 3  # something to tell the classes apart
    return faces, labels


@pytest.fixture
def tiny(smoke):
    return apply_overrides(
        smoke, {"teacher.classifier_epochs": 20, "teacher.epochs": 1, "teacher.batch_size": 4}
    )


def test_a_pretrained_backbone_loads_from_the_hub_cache(tmp_path, monkeypatch, tiny):
    checkpoints = tmp_path / "torch" / "checkpoints"
    checkpoints.mkdir(parents=True)
    reference = InceptionResnetV1(
        pretrained=None, classify=True, num_classes=8631
    )  # VGGFace2's layout
    state = {k: v.half() if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    torch.save(state, checkpoints / teacher_module.VGGFACE2)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = apply_overrides(tiny, {"teacher.source": "pretrained"})
    info = prepare_teacher(
        tmp_path / "teacher",
        {"train": _faces(8), "val": _faces(4, seed=1)},
        2,
        config,
        progress=False,
    )
    assert info.source == "pretrained (VGGFace2)" and info.backbone_path.endswith(
        teacher_module.VGGFACE2
    )
    loaded = load_teacher(tmp_path / "teacher")
    weight = loaded.backbone.conv2d_1a.conv.weight
    assert torch.equal(weight, state["conv2d_1a.conv.weight"].float())
    assert json.loads((tmp_path / "teacher" / INFO).read_text())["source"] == info.source


def test_asking_for_pretrained_weights_that_are_absent_is_an_error(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    config = apply_overrides(tiny, {"teacher.source": "pretrained"})
    with pytest.raises(UserError, match="does not exist"):
        prepare_teacher(
            tmp_path / "t", {"train": _faces(4), "val": _faces(2)}, 2, config, progress=False
        )


def test_without_weights_the_teacher_is_trained_and_frozen(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    info = prepare_teacher(
        tmp_path / "t", {"train": _faces(8), "val": _faces(4, seed=1)}, 2, tiny, progress=False
    )
    assert info.source.startswith("trained") and (tmp_path / "t" / "backbone.pt").exists()
    assert info.backbone_path == "backbone.pt"  # relative: the dataset folder can move
    loaded = load_teacher(tmp_path / "t")
    loaded.train()
    assert not loaded.training and not loaded.backbone.training
    assert not any(p.requires_grad for p in loaded.parameters())
    embedding, logits = loaded(standardize(torch.from_numpy(_faces(3)[0])))
    assert embedding.shape == (3, 512) and logits.shape == (3, 2) and not embedding.requires_grad
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)


def test_the_classifier_separates_separable_embeddings_and_keeps_soft_logits(tiny):
    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 512, generator=generator), dim=1)
    labels = torch.arange(60) % 3
    embeddings = torch.nn.functional.normalize(
        centres[labels] + 0.03 * torch.randn(60, 512, generator=generator), dim=1
    )
    config = apply_overrides(tiny, {"teacher.classifier_epochs": 300})
    classifier, train_accuracy, val_accuracy = fit_classifier(
        embeddings[:45], labels[:45], embeddings[45:], labels[45:], 3, config.teacher, 0
    )
    assert train_accuracy == 1.0 and val_accuracy == 1.0
    probabilities = classifier(embeddings).softmax(1).max(1).values
    assert probabilities.mean() < 0.995  # weight decay keeps the targets soft for KD


def test_augmentation_is_reproducible_and_keeps_the_shape():
    faces = standardize(torch.from_numpy(_faces(4)[0]))
    a = augment(faces, torch.Generator().manual_seed(1))
    b = augment(faces, torch.Generator().manual_seed(1))
    assert a.shape == faces.shape and torch.equal(a, b) and not torch.equal(a, faces)


def test_teacher_views_store_k_views_with_view_zero_unaugmented(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    prepare_teacher(
        tmp_path / "t", {"train": _faces(8), "val": _faces(4, seed=1)}, 2, tiny, progress=False
    )
    shapes = schema.Shapes(32, 80, 3, 2)
    faces = _faces(5, seed=2)[0]
    batch = {schema.KEY: np.arange(5), schema.FACE: schema.encode(faces)}
    out = TeacherViews(tmp_path / "t", shapes)(batch)
    embedding = shapes.decode_embedding(list(out[schema.TEACHER_EMBEDDING]))
    logits = shapes.decode_logits(list(out[schema.TEACHER_LOGITS]))
    assert embedding.shape == (5, 3, 512) and logits.shape == (5, 3, 2)
    reference, _ = load_teacher(tmp_path / "t")(standardize(torch.from_numpy(faces)))
    assert np.allclose(embedding[:, 0], reference.numpy(), atol=1e-5)
    assert not np.allclose(embedding[:, 1], embedding[:, 0])
    # however Ray Data cuts the blocks (another CPU count), a face's outputs are the same bits
    views = TeacherViews(tmp_path / "t", shapes)
    parts = [views({k: v[rows] for k, v in batch.items()}) for rows in (slice(0, 2), slice(2, 5))]
    for column in (schema.TEACHER_EMBEDDING, schema.TEACHER_LOGITS):
        assert [bytes(v) for part in parts for v in part[column]] == [bytes(v) for v in out[column]]


def test_a_tampered_backbone_is_refused(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    prepare_teacher(
        tmp_path / "t", {"train": _faces(8), "val": _faces(4, seed=1)}, 2, tiny, progress=False
    )
    with open(tmp_path / "t" / "backbone.pt", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(UserError, match="hash differs"):
        load_teacher(tmp_path / "t")
