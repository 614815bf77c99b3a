"""The vision path: IDX reader, image datasets, CLIP teachers through
open_clip (a tiny random architecture, pretrained=None, so every path runs
offline), the few-shot CLAP teacher, image students, and an end-to-end run."""
from __future__ import annotations

import gzip
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
open_clip = pytest.importorskip("open_clip")

from pcoreset.activekd import RunConfig, run  # noqa: E402
from pcoreset.activekd.datasets import Dataset, load_dataset  # noqa: E402
from pcoreset.activekd.datasets import fashion_mnist as FM  # noqa: E402
from pcoreset.activekd.datasets import images as IM  # noqa: E402
from pcoreset.activekd.students import build_student  # noqa: E402
from pcoreset.activekd.teachers import clap as CP  # noqa: E402
from pcoreset.activekd.teachers import clip as CL  # noqa: E402
from pcoreset.activekd.teachers import build_teacher  # noqa: E402
from pcoreset.errors import InvalidInputError  # noqa: E402

TINY = "pcoreset-tiny-clip"
TINY_CONFIG = {"embed_dim": 32,
               "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
HAVE_FMNIST = (FM.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()


@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory):
    """Register a tiny open_clip architecture (random init; no download)."""
    path = tmp_path_factory.mktemp("clipcfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PCORESET_CACHE", str(tmp_path / "cache"))


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> Path:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def image_dataset(n=12, classes=("cat", "dog", "bird"), seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 20, 24, 3), dtype=np.uint8)
    return Dataset(name="synthetic", ids=[f"s{i}" for i in range(n)], labels=np.arange(n) % len(classes),
                   is_test=np.arange(n) >= n - 3, class_names=list(classes),
                   items=[IM.ArrayImage(images, i, f"synthetic/{i}") for i in range(n)])


# ----------------------------------------------------------------------------- IDX + datasets


def test_idx_reader_round_trip_and_errors(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    assert np.array_equal(FM.read_idx(write_idx(tmp_path / "a.gz", imgs)), imgs)
    ints = np.arange(-3, 3, dtype=">i4")
    out = FM.read_idx(write_idx(tmp_path / "b", ints, compress=False))
    assert out.dtype == np.int32 and out.tolist() == list(range(-3, 3))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(InvalidInputError, match=r"header says shape \(5, 4, 3\)"):
        FM.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(InvalidInputError, match="bad magic"):
        FM.read_idx(tmp_path / "magic")
    with pytest.raises(InvalidInputError, match="does not exist"):
        FM.read_idx(tmp_path / "nope.gz")


@pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_files():
    labels = FM.read_idx(FM.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10
    ds = load_dataset(RunConfig(dataset="fashion-mnist", max_pool=50, max_test=20))
    assert (len(ds.pool_idx), len(ds.test_idx)) == (50, 20) and ds.class_names[9] == "ankle boot"
    img = IM.load_image(ds.items[0])
    assert img.mode == "RGB" and img.size == (28, 28)


def test_fashion_mnist_dir_and_torchvision_builtin(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train", 12), ("t10k", 6)):
        write_idx(raw / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), False)
        write_idx(raw / f"{stem}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), False)
    ours = load_dataset(RunConfig(dataset=f"fashion-mnist:{raw}"))
    theirs = load_dataset(RunConfig(dataset=f"torchvision:FashionMNIST:{tmp_path}"))
    for ds in (ours, theirs):
        assert len(ds) == 18 and ds.is_test.sum() == 6 and ds.num_classes == 10
    assert np.array_equal(ours.labels, theirs.labels)
    assert np.array_equal(np.asarray(IM.load_image(ours.items[3])), np.asarray(IM.load_image(theirs.items[3])))
    with pytest.raises(InvalidInputError, match="download=False"):
        load_dataset(RunConfig(dataset=f"torchvision:CIFAR10:{tmp_path}"))
    with pytest.raises(InvalidInputError, match="not found"):
        load_dataset(RunConfig(dataset=f"fashion-mnist:{tmp_path}"))


def test_image_folder_with_and_without_split_dirs(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c, colour in (("red_fox", (200, 0, 0)), ("sky", (0, 0, 200))):
            d = tmp_path / "split" / split / c
            d.mkdir(parents=True)
            for i in range(3 if split == "train" else 1):
                Image.new("RGB", (10, 8), colour).save(d / f"{i}.png")
    ds = load_dataset(RunConfig(dataset=f"imagefolder:{tmp_path / 'split'}"))
    assert ds.class_names == ["red_fox", "sky"] and len(ds) == 8 and ds.is_test.sum() == 2
    assert ds.ids[0] == str(Path("train") / "red_fox" / "0.png")
    assert IM.load_image(ds.items[-1]).getpixel((0, 0)) == (0, 0, 200)
    flat = load_dataset(RunConfig(dataset=f"imagefolder:{tmp_path / 'split' / 'train'}", classes=["fox", "sky"],
                                  test_fraction=0.5))
    assert flat.class_names == ["fox", "sky"] and flat.is_test.sum() == 3
    with pytest.raises(InvalidInputError, match="2 class folders"):
        load_dataset(RunConfig(dataset=f"imagefolder:{tmp_path / 'split' / 'train'}", classes=["a"]))
    with pytest.raises(InvalidInputError, match="not a directory"):
        load_dataset(RunConfig(dataset=f"imagefolder:{tmp_path / 'none'}"))


# ----------------------------------------------------------------------------- teachers


def test_prompt_ensembling_and_logits_are_100_cosine(tmp_path):
    ds = image_dataset()
    templates = ["a photo of a {}.", "a drawing of the {class}."]
    teacher = CL.CLIPTeacher(TINY, templates=templates, cache_dir=tmp_path)
    logits = teacher.predict(ds)
    model, tok, prep = teacher._model, teacher._tokenizer, teacher._preprocess
    with torch.no_grad():
        weights = []
        for c in ds.class_names:
            e = model.encode_text(tok([t.replace("{}", c).replace("{class}", c) for t in templates]))
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(0)
            weights.append(m / m.norm())
        img = model.encode_image(torch.stack([prep(IM.load_image(it)) for it in ds.items]))
    cos = torch.nn.functional.cosine_similarity(img[:, None, :], torch.stack(weights)[None], dim=-1)
    np.testing.assert_allclose(logits, 100 * cos.numpy(), rtol=1e-4, atol=1e-4)
    assert teacher.images_encoded == len(ds)
    # one template is not the ensemble: the ensembling changes the class embedding
    single = CL.CLIPTeacher(TINY, templates=templates[:1], cache_dir=tmp_path)
    assert not np.allclose(single.predict(ds), logits, atol=1e-3)
    assert single.images_encoded == 0  # same weights + same images: features came from the cache


def test_templates_and_scale_from_config():
    cfg = RunConfig(teacher="clip", teacher_model=TINY)
    t = build_teacher(cfg)
    assert t.scale == 100.0 and t.templates is None
    assert CL.resolve_templates(cfg) == [CL.DEFAULT_TEMPLATE]
    cfg = RunConfig(teacher="clip", teacher_model=TINY, prompt="a {} | an image of {}", teacher_scale=30.0)
    t = build_teacher(cfg)
    assert t.scale == 30.0 and t.templates == ["a {}", "an image of {}"]
    assert CL.parse_clip_spec("ViT-B-32:laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert CL.parse_clip_spec("ViT-B-32:/m/clip.pt") == ("ViT-B-32", "/m/clip.pt")
    assert CL.parse_clip_spec("") == ("ViT-B-32", "openai")


def test_local_checkpoint_gives_the_same_teacher(tmp_path):
    ds = image_dataset()
    a = CL.CLIPTeacher(TINY, cache_dir=tmp_path / "a")
    ref = a.predict(ds)
    ckpt = tmp_path / "tiny.pt"
    torch.save(a._model.state_dict(), ckpt)
    b = CL.CLIPTeacher(f"{TINY}:{ckpt}", cache_dir=tmp_path / "b")
    np.testing.assert_allclose(b.predict(ds), ref, rtol=1e-5, atol=1e-5)
    # the cache key holds the checkpoint's content hash, not its path: a copy elsewhere shares it
    copy = tmp_path / "elsewhere" / "tiny-copy.pt"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())
    c = CL.CLIPTeacher(f"{TINY}:{copy}", cache_dir=tmp_path / "b")
    assert "sha256" in b.identity()["pretrained"] and str(tmp_path) not in json.dumps(b.identity())
    assert c.identity() == b.identity() and c._features_path(ds) == b._features_path(ds)
    with pytest.raises(InvalidInputError, match="open_clip cannot build it"):
        CL.CLIPTeacher(f"{TINY}:{tmp_path / 'missing-tag'}", cache_dir=tmp_path).predict(ds)
    with pytest.raises(InvalidInputError, match="needs an image dataset"):
        a.predict(Dataset(name="t", ids=["x"], labels=np.zeros(1, np.int64), is_test=np.zeros(1, bool),
                          class_names=["a"], texts=["x"]))


def test_missing_open_clip_disables_only_the_vision_teacher(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(InvalidInputError, match="pip install open_clip_torch"):
        CL.CLIPTeacher(TINY, cache_dir=tmp_path).predict(image_dataset())


def _clap_problem(seed=0, c=4, d=16, per_class=8, sample_seed=None):
    """Text weights that are right for classes 0..c-2, while class c-1's images lie
    next to class 0's text: the zero-shot model confuses them."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(c, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    centres = text.copy()
    centres[c - 1] = text[0] + 0.6 * rng.normal(size=d) / np.sqrt(d)
    y = np.repeat(np.arange(c), per_class)
    rng = np.random.default_rng(sample_seed) if sample_seed is not None else rng
    x = centres[y] + 0.15 * rng.normal(size=(len(y), d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y, text.astype(np.float32)


def test_fewshot_probe_moves_toward_labels_and_stays_near_zero_shot():
    x, y, text = _clap_problem()
    x_test, y_test, _ = _clap_problem(per_class=20, sample_seed=7)
    zs_acc = ((x_test @ text.T).argmax(1) == y_test).mean()
    fit = {pen: CP.fit_clap(x, y, text, penalty=pen, steps=150, lr=2e-3) for pen in (0.0, 1.0, 10.0)}
    acc = ((x_test @ fit[1.0].T).argmax(1) == y_test).mean()
    assert zs_acc <= 0.8 and acc >= zs_acc + 0.2  # the probe learns what the labels say
    drift = {pen: np.linalg.norm(w - text, axis=1) for pen, w in fit.items()}
    assert drift[10.0].sum() < drift[1.0].sum() < drift[0.0].sum()  # the penalty holds it near zero-shot
    # classes the zero-shot model already gets right (1, 2) barely move; the confused ones (0, 3) do
    assert drift[1.0][[1, 2]].max() < 0.1 * drift[1.0][[0, 3]].min()
    assert np.array_equal(CP.fit_clap(x[:0], y[:0], text), text)


def test_fewshot_teacher_adapt(tmp_path):
    ds = image_dataset(n=18)
    t = CP.FewShotCLIPTeacher(TINY, cache_dir=tmp_path, steps=60, lr=5e-3)
    assert t.adaptive
    base = t.predict(ds)
    rows = ds.pool_idx[:9]
    adapted = t.adapt(ds, rows, ds.labels[rows], base)
    assert adapted.shape == base.shape and adapted.dtype == np.float32
    assert (adapted[rows].argmax(1) == ds.labels[rows]).mean() >= (base[rows].argmax(1) == ds.labels[rows]).mean()
    assert t.images_encoded == len(ds)  # the refit reuses the cached features
    with pytest.raises(InvalidInputError, match="labels must be in"):
        t.adapt(ds, rows[:1], np.array([7]), base)


# ----------------------------------------------------------------------------- students


@pytest.mark.parametrize("student", ["smallcnn", "resnet18", "mobilenet_v2"])
def test_image_students(student):
    ds = image_dataset(n=6)
    s = build_student(RunConfig(student=student), ds)
    s.image_size = 32  # keep the torchvision backbones cheap
    backbone, dim = s.make_backbone()
    x_eval = s.inputs(np.array([0, 1]), train=False)[0]
    assert x_eval.shape == (2, 3, 32, 32)
    assert torch.equal(x_eval, s.inputs(np.array([0, 1]), train=False)[0])
    torch.manual_seed(0)
    assert not torch.equal(x_eval, s.inputs(np.array([0, 1]), train=True)[0])  # augmentation when training
    assert abs(float(x_eval.mean())) < 3  # ImageNet-normalised, not raw pixels
    backbone.eval()
    with torch.no_grad():
        assert backbone(x_eval).shape == (2, dim)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist is not installed")
def test_end_to_end_fashion_mnist_resume_and_teacher_once(tmp_path, monkeypatch):
    calls = []
    predict = CL.CLIPTeacher.predict

    def counting(self, ds):
        calls.append(len(ds))
        return predict(self, ds)

    monkeypatch.setattr(CL.CLIPTeacher, "predict", counting)

    def cfg(**kw):
        base = dict(dataset="fashion-mnist", max_pool=160, max_test=60, teacher="clip", teacher_model=TINY,
                    student="smallcnn", strategy="pcoreset", rounds=2, budget=10, epochs=2, batch_size=32,
                    lr=0.003)
        base.update(kw)
        return RunConfig(**base)

    out = tmp_path / "pc"
    first = run(cfg(rounds=1), out, progress=False, echo=lambda s: None, plot=False)
    assert first.status == "finished" and len(first.metrics) == 2
    picks1 = (out / "rounds" / "1" / "picks.npy").read_bytes()
    res = run(cfg(), out, progress=False, echo=lambda s: None, plot=False)  # resume: one more round
    assert res.status == "finished" and [m["num_labeled"] for m in res.metrics] == [10, 20, 30]
    assert (out / "rounds" / "1" / "picks.npy").read_bytes() == picks1
    for k in range(3):
        assert {"picks.npy", "labels.npy", "metrics.json"} <= {p.name for p in (out / "rounds" / str(k)).iterdir()}
    assert (out / "summary.csv").read_text().count("\n") == 4
    assert np.load(out / "teacher_logits.npy").shape == (220, 10)
    m = json.loads((out / "rounds" / "2" / "metrics.json").read_text())
    assert 0.0 <= m["test_acc"] <= 1.0 and m["teacher_test_acc"] is not None
    feats = list((tmp_path / "cache" / "clip-features").glob("*.npy"))
    assert len(feats) == 1
    mtime = feats[0].stat().st_mtime_ns
    run(cfg(rounds=1, strategy="random"), tmp_path / "rnd", progress=False, echo=lambda s: None, plot=False)
    assert calls == [220]  # one teacher pass over the pool + test rows, for all three runs
    assert feats[0].stat().st_mtime_ns == mtime

    adapted = []
    adapt = CP.FewShotCLIPTeacher.adapt

    def counting_adapt(self, ds, rows, labels, base):
        adapted.append(len(rows))
        return adapt(self, ds, rows, labels, base)

    monkeypatch.setattr(CP.FewShotCLIPTeacher, "adapt", counting_adapt)
    res = run(cfg(rounds=1, teacher="fewshot"), tmp_path / "fs", progress=False, echo=lambda s: None, plot=False)
    assert res.status == "finished" and adapted == [10, 20]  # refit on each round's labeled set
    assert feats[0].stat().st_mtime_ns == mtime  # ...from the cached image features
