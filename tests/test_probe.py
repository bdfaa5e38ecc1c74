"""Frozen evaluation: attentive probe, k-NN, metrics, features on the fly and from tools/embed.py."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tool_module import load_tool

import jepa
from jepa.data.manifest import ManifestEntry, ManifestError, read_manifest
from jepa.data.synthetic import make_synthetic_dataset
from jepa.eval import (
    AttentiveClassifier,
    FeatureSet,
    ProbeConfig,
    evaluate_probe,
    extract_features,
    knn_evaluate,
    knn_scores,
    load_embeddings,
    load_probe,
    predict_videos,
    save_probe,
    topk_accuracy,
    train_probe,
)
from jepa.eval.metrics import average_by_group, chance_accuracy, confusion_matrix
from jepa.export.embed import EmbedConfig, extract_embeddings
from jepa.export.state import CheckpointMismatchError
from jepa.export.writers import export_encoder
from jepa.models.registry import create_encoder

REPO = Path(__file__).resolve().parents[1]


def separable_set(
    num_videos: int, num_classes: int, seed: int, views: int = 1, tokens: int = 6, dim: int = 32
) -> FeatureSet:
    """Each class is a fixed direction added to one random token of every sample, under noise:
    a probe must find the token that carries it (attentive pooling) to classify."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.arange(num_videos) % num_classes
    rows = num_videos * views
    x = torch.randn(rows, tokens, dim, generator=g)
    video = torch.arange(num_videos).repeat_interleave(views)
    where = torch.randint(0, tokens, (rows,), generator=g)
    x[torch.arange(rows), where] += protos[labels[video]]
    view = torch.arange(views).repeat(num_videos)
    return FeatureSet(x, video, torch.zeros(rows, dtype=torch.long), view, labels)


def test_probe_learns_separable_task_quickly() -> None:
    train, val = separable_set(96, 4, seed=0), separable_set(48, 4, seed=1)
    result = train_probe(
        train, ProbeConfig(depth=1, num_heads=4, epochs=12, batch_size=16, lrs=(3e-3,)), val, device="cpu"
    )
    assert result.metrics["top1"] >= 95.0, result.metrics
    assert result.num_classes == 4 and len(result.heads) == 1
    untrained = train_probe(train, ProbeConfig(depth=1, num_heads=4, epochs=1, lrs=(1e-7,)), val, device="cpu")
    assert untrained.metrics["top1"] < 60.0  # the task is not solved without training


def test_probe_grid_trains_every_head_and_picks_the_best() -> None:
    train, val = separable_set(64, 4, seed=0), separable_set(32, 4, seed=1)
    cfg = ProbeConfig(depth=0, num_heads=4, epochs=6, batch_size=16, lrs=(1e-7, 3e-3), weight_decays=(0.0, 0.05))
    result = train_probe(train, cfg, val, device="cpu")
    assert [(h.lr, h.weight_decay) for h in result.heads] == [(1e-7, 0.0), (1e-7, 0.05), (3e-3, 0.0), (3e-3, 0.05)]
    assert result.metrics["top1"] == max(h.metrics["top1"] for h in result.heads)
    assert result.metrics["top1"] > max(h.metrics["top1"] for h in result.heads[:2])


def test_multi_view_averaging_is_mean_of_softmax() -> None:
    fs = separable_set(6, 3, seed=0, views=2)
    tokens, video = fs.samples("concat")
    assert tokens.shape == (12, 6, 32) and video.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    probe = train_probe(fs, ProbeConfig(depth=0, num_heads=4, epochs=1), device="cpu").probe
    with torch.no_grad():
        per_sample = probe(tokens).softmax(-1)
    expected = per_sample.reshape(6, 2, -1).mean(1)
    torch.testing.assert_close(predict_videos(probe, fs), expected)


def test_concat_joins_windows_of_a_view_in_order() -> None:
    # video 0 has windows 0, 1 for views 0, 1; rows given out of order.
    tokens = torch.arange(8, dtype=torch.float32).reshape(4, 1, 2).repeat(1, 3, 1)
    fs = FeatureSet(
        tokens,
        torch.zeros(4, dtype=torch.long),
        torch.tensor([1, 0, 1, 0]),
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([2]),
    )
    joined, video = fs.samples("concat")
    assert joined.shape == (2, 6, 2) and video.tolist() == [0, 0]
    assert joined[0, :3, 0].tolist() == [2.0] * 3 and joined[0, 3:, 0].tolist() == [0.0] * 3
    ragged = FeatureSet(
        tokens[:3],
        torch.zeros(3, dtype=torch.long),
        torch.tensor([1, 0, 0]),
        torch.tensor([0, 0, 1]),
        torch.tensor([2]),
    )
    with pytest.raises(ValueError, match="separate"):
        ragged.samples("concat")
    assert ragged.samples("separate")[0].shape == (3, 3, 2)


def test_topk_accuracy_and_other_metrics() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 1, 2, 2])
    acc = topk_accuracy(scores, labels, ks=(1, 2, 5))
    assert acc == {"top1": 50.0, "top2": 75.0, "top5": 100.0}
    assert confusion_matrix(scores, labels).tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert chance_accuracy(labels, 3) == 50.0
    torch.testing.assert_close(
        average_by_group(scores, torch.tensor([0, 0, 1, 1]), 2), torch.tensor([[0.3, 0.5, 0.2], [0.4, 0.3, 0.3]])
    )
    with pytest.raises(ValueError, match="labels must lie"):
        topk_accuracy(scores, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="every group"):
        average_by_group(scores, torch.tensor([0, 0, 2, 2]), 3)


def test_knn_votes_by_similarity() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    scores = knn_scores(train, torch.tensor([0, 0, 1, 1]), torch.tensor([[1.0, 0.05], [0.0, 2.0]]), num_classes=2, k=3)
    assert scores.argmax(1).tolist() == [0, 1]
    tr, va = separable_set(64, 4, seed=0, tokens=1), separable_set(32, 4, seed=1, tokens=1)
    assert knn_evaluate(tr, va, k=5)["top1"] == 100.0
    with pytest.raises(ValueError, match="train labels"):
        knn_scores(train, torch.tensor([0, 0, 1, 5]), train, num_classes=2)


def test_probe_checkpoint_round_trip(tmp_path: Path) -> None:
    fs = separable_set(16, 4, seed=0)
    probe = train_probe(fs, ProbeConfig(depth=1, num_heads=4, epochs=1), device="cpu").probe
    save_probe(probe, tmp_path / "probe", meta={"factor": "toy"})
    loaded = load_probe(tmp_path / "probe")
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(fs.tokens), probe(fs.tokens))
    assert evaluate_probe(loaded, fs) == evaluate_probe(probe, fs)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "jepa-export"}')
    with pytest.raises(ValueError, match="jepa-probe"):
        load_probe(tmp_path / "other")


def test_official_eval_checkpoint_loads_the_chosen_head(tmp_path: Path) -> None:
    """The official frozen evaluation saves {"classifiers": [DDP state dicts], "opt", "epoch"}."""
    heads = [AttentiveClassifier(32, 5, num_heads=4, depth=2, mlp_ratio=2.0) for _ in range(2)]
    optimizer = torch.optim.AdamW(heads[1].parameters())
    heads[1](torch.randn(3, 6, 32)).sum().backward()
    optimizer.step()
    ckpt = {
        "classifiers": [{f"module.{k}": v for k, v in h.state_dict().items()} for h in heads],
        "opt": [optimizer.state_dict()],
        "scaler": None,
        "epoch": 20,
    }
    torch.save(ckpt, tmp_path / "latest.pt")
    loaded = load_probe(tmp_path / "latest.pt", head=1, num_heads=4)
    assert loaded.config == heads[1].config
    tokens = torch.randn(3, 6, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), heads[1].eval()(tokens))
        assert not torch.allclose(load_probe(tmp_path / "latest.pt", num_heads=4)(tokens), loaded(tokens))
    with pytest.raises(CheckpointMismatchError, match="holds 2 classifier"):
        load_probe(tmp_path / "latest.pt", head=2, num_heads=4)
    with pytest.raises(CheckpointMismatchError, match="not divisible by num_heads=5"):
        load_probe(tmp_path / "latest.pt", num_heads=5)
    torch.save({"target_encoder": {}}, tmp_path / "encoder.pt")
    with pytest.raises(CheckpointMismatchError, match="not an official probe"):
        load_probe(tmp_path / "encoder.pt")


def test_unlabelled_or_mismatched_sets_are_refused() -> None:
    fs = separable_set(8, 4, seed=0)
    with pytest.raises(ValueError, match="no label"):
        train_probe(fs.with_labels([-1] * 8), ProbeConfig(epochs=1), device="cpu")
    with pytest.raises(ValueError, match="num_classes"):
        train_probe(fs, ProbeConfig(epochs=1), num_classes=2, device="cpu")
    with pytest.raises(ValueError, match="combine"):
        ProbeConfig(combine="sum")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos") / "set"
    return make_synthetic_dataset(
        root, num_videos=6, num_frames=8, size=32, fps=8, num_classes=2, num_directions=2, speeds=(1.0,)
    )


def tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_encoder(
        "vit_tiny", img_size=32, num_frames=4, patch_size=16, embed_dim=32, depth=1, num_heads=2
    ).eval()


def test_on_the_fly_features_equal_embed_tool_output(tmp_path: Path, tiny_videos: Path) -> None:
    entries = read_manifest(tiny_videos)
    cfg = EmbedConfig(
        frames_per_clip=4,
        frame_step=1,
        num_clips=2,
        crop_size=32,
        num_crops=2,
        outputs=("pooled", "tokens"),
        batch_size=3,
        precision="fp32",
    )
    encoder = tiny_encoder()
    live = extract_features(encoder, entries, cfg, device="cpu")
    assert live.tokens.shape == (6 * 2 * 2, 2 * 2 * 2, 32) and live.num_videos == 6
    assert live.labels.tolist() == [e.label for e in entries]
    extract_embeddings(encoder, entries, tmp_path / "emb", cfg, device="cpu", progress=False)
    stored = load_embeddings(tmp_path / "emb")
    order_live = torch.argsort(live.video * 4 + live.window * 2 + live.view)
    order_stored = torch.argsort(stored.video * 4 + stored.window * 2 + stored.view)
    torch.testing.assert_close(stored.tokens[order_stored], live.tokens[order_live], atol=1e-5, rtol=1e-5)
    assert stored.labels.tolist() == live.labels.tolist()
    pooled = load_embeddings(tmp_path / "emb", output="pooled")
    assert pooled.tokens.shape == (24, 1, 32)
    torch.testing.assert_close(pooled.pooled(), live.pooled(), atol=1e-5, rtol=1e-5)


def test_image_classification_features(tmp_path: Path) -> None:
    entries = []
    for i in range(4):
        array = np.full((40, 48, 3), 60 * i, dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / f"im{i}.png")
        entries.append(ManifestEntry(str(tmp_path / f"im{i}.png"), i % 2))
    cfg = EmbedConfig(frames_per_clip=1, frame_step=1, crop_size=32, num_crops=2, batch_size=4)
    fs = extract_features(tiny_encoder(), entries, cfg, device="cpu")
    assert fs.tokens.shape == (8, 4, 32) and fs.labels.tolist() == [0, 1, 0, 1]
    result = train_probe(fs, ProbeConfig(depth=0, num_heads=2, epochs=2), fs, device="cpu")
    assert set(result.metrics) == {"top1", "top5"}


def test_probe_cli_on_embeddings_and_on_the_fly(tmp_path: Path, tiny_videos: Path) -> None:
    encoder = tiny_encoder()
    export_encoder(encoder, tmp_path / "enc")
    entries = read_manifest(tiny_videos)
    cfg = EmbedConfig(frames_per_clip=4, frame_step=1, num_clips=1, crop_size=32, outputs=("tokens",))
    extract_embeddings(encoder, entries, tmp_path / "emb", cfg, device="cpu", progress=False)
    common = ["--epochs", "2", "--depth", "0", "--num-heads", "2", "--knn-k", "3", "--threads", "1"]
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "probe.py"), "--train-embeddings", str(tmp_path / "emb"),
         "--val-embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "p1"), *common],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "top1" in out.stdout and "knn" in out.stdout
    assert load_probe(tmp_path / "p1").config["dim"] == 32
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "probe.py"), "--checkpoint", str(tmp_path / "enc"),
         "--train-manifest", str(tiny_videos), "--val-manifest", str(tiny_videos), "--frames", "4",
         "--frame-step", "1", "--crop", "32", "--layers", "1", "1", "--out", str(tmp_path / "p2"), *common],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    printed = json.loads(out.stdout.strip().splitlines()[-1])
    probe = load_probe(tmp_path / "p2")
    assert probe.config["dim"] == 64  # block 1's output twice, as asked
    live = extract_features(encoder, entries, replace(cfg, layers=(1, 1)), device="cpu")
    assert evaluate_probe(probe, live) == pytest.approx(printed["attentive"])
    assert load_probe(tmp_path / "p2").config == probe.config


def test_probe_cli_evaluates_a_trained_probe_without_training(tmp_path: Path, tiny_videos: Path, capsys) -> None:
    encoder = tiny_encoder()
    export_encoder(encoder, tmp_path / "enc")
    entries = read_manifest(tiny_videos)
    cfg = EmbedConfig(frames_per_clip=4, frame_step=1, num_clips=1, crop_size=32, outputs=("tokens",), precision="fp32")
    live = extract_features(encoder, entries, cfg, device="cpu")
    probe = train_probe(live, ProbeConfig(depth=0, num_heads=2, epochs=2), device="cpu").probe
    save_probe(probe, tmp_path / "probe")
    tool = load_tool("probe")
    args = ["--checkpoint", str(tmp_path / "enc"), "--val-manifest", str(tiny_videos), "--frames", "4", "--frame-step", "1",
            "--crop", "32", "--eval", str(tmp_path / "probe"), "--threads", "1", "--precision", "fp32"]  # fmt: skip
    assert tool.main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["attentive"] == pytest.approx(evaluate_probe(probe, live))
    with pytest.raises(SystemExit, match="--eval needs no train set"):
        tool.main([a for a in args if a not in ("--eval", str(tmp_path / "probe"))])


def test_classify_tool_prints_top_classes_per_video(tmp_path: Path, tiny_videos: Path, capsys) -> None:
    encoder = tiny_encoder()
    probe = AttentiveClassifier(32, 3, num_heads=2, depth=1, labels=["left", "right", "still"]).eval()
    jepa.export_encoder(encoder, tmp_path / "cls", "hf", probe=probe)  # a VJEPA2ForVideoClassification dir
    entries = read_manifest(tiny_videos)
    one_file = entries[0].path
    args = ["--checkpoint", str(tmp_path / "cls"), "--frames", "4", "--frame-step", "1", "--crop", "32", "--top-k", "2"]
    assert load_tool("classify").main([*args, "--json", one_file, str(tiny_videos)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["path"] for r in rows] == [one_file] + [e.path for e in entries]
    cfg = EmbedConfig(frames_per_clip=4, frame_step=1, crop_size=32)
    expected = predict_videos(probe, extract_features(encoder, [entries[0]], cfg, device="cpu"))[0]
    top = expected.topk(2)
    assert rows[0]["top"] == [
        [["left", "right", "still"][int(i)], round(float(p), 4)] for p, i in zip(top.values, top.indices)
    ]
    assert rows[0]["top"] == rows[1]["top"], "the same video gives the same answer from a file and a manifest"


def test_class_name_labels_number_alike_through_probe_embed_and_classify(
    tmp_path: Path, tiny_videos: Path, capsys
) -> None:
    """Class names as labels: the val manifest (one class missing, rows in another order) is
    numbered by the train manifest's names; the probe saves them and classify prints them;
    embedding directories numbered differently are refused with the fix."""
    encoder = tiny_encoder()
    export_encoder(encoder, tmp_path / "enc")
    paths = [e.path for e in read_manifest(tiny_videos)]
    names = ["owl", "cat", "emu", "cat", "owl", "emu"]
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(f"{p},{n}\n" for p, n in zip(paths, names)))
    (tmp_path / "val.csv").write_text("path,label\n" + "".join(f"{p},{n}\n" for p, n in zip(paths[:2], names[:2])))
    clip = ["--frames", "4", "--frame-step", "1", "--crop", "32", "--threads", "1", "--precision", "fp32"]
    probe_args = ["--epochs", "2", "--depth", "0", "--num-heads", "2", "--method", "attentive", *clip]
    tool = load_tool("probe")
    assert tool.main(["--checkpoint", str(tmp_path / "enc"), "--train-manifest", str(tmp_path / "train.csv"),
                      "--val-manifest", str(tmp_path / "val.csv"), "--out", str(tmp_path / "probe"), *probe_args]) == 0  # fmt: skip
    assert "classes (3, numbered in this order): cat, emu, owl" in capsys.readouterr().out
    probe = load_probe(tmp_path / "probe")
    assert probe.config["labels"] == ["cat", "emu", "owl"] and probe.config["num_classes"] == 3
    cfg = EmbedConfig(frames_per_clip=4, frame_step=1, crop_size=32, precision="fp32")
    val = extract_features(
        encoder, read_manifest(tmp_path / "val.csv", classes=["cat", "emu", "owl"]), cfg, device="cpu"
    )
    assert val.labels.tolist() == [2, 0]  # owl, cat in the train numbering (val alone would give cat=0, owl=1)
    assert load_tool("classify").main(["--checkpoint", str(tmp_path / "enc"), "--probe", str(tmp_path / "probe"),
                                       "--json", *clip[:6], paths[0]]) == 0  # fmt: skip
    top = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top"]
    assert sorted(name for name, _ in top) == ["cat", "emu", "owl"]

    embed = load_tool("embed")
    common = ["--checkpoint", str(tmp_path / "enc"), "--frames", "4", "--frame-step", "1", "--crop", "32",
              "--outputs", "tokens", "--no-progress", "--precision", "fp32"]  # fmt: skip
    assert embed.main([*common, "--manifest", str(tmp_path / "train.csv"), "--out", str(tmp_path / "e_train")]) == 0
    assert embed.main([*common, "--manifest", str(tmp_path / "val.csv"), "--out", str(tmp_path / "e_val")]) == 0
    on_embeddings = ["--train-embeddings", str(tmp_path / "e_train"), *probe_args[:8], "--threads", "1"]
    with pytest.raises(SystemExit, match="--classes TRAIN_MANIFEST"):
        tool.main([*on_embeddings, "--val-embeddings", str(tmp_path / "e_val")])
    assert embed.main([*common, "--manifest", str(tmp_path / "val.csv"), "--out", str(tmp_path / "e_val2"),
                       "--classes", str(tmp_path / "train.csv")]) == 0  # fmt: skip
    assert load_embeddings(tmp_path / "e_val2").labels.tolist() == [2, 0]
    assert tool.main([*on_embeddings, "--val-embeddings", str(tmp_path / "e_val2")]) == 0


def test_tools_pick_the_label_column_of_a_header_manifest(tmp_path: Path, tiny_videos: Path, capsys) -> None:
    """`--label-column` on probe / embed / classify reads a pandas-style manifest with several
    label columns; a column that is not there is refused with the header named."""
    export_encoder(tiny_encoder(), tmp_path / "enc")
    paths = [e.path for e in read_manifest(tiny_videos)]
    animals, digits = ["owl", "cat", "emu", "cat", "owl", "emu"], [3, 1, 4, 1, 5, 9]
    rows = "".join(f"{p},{d},{a}\n" for p, d, a in zip(paths, digits, animals))
    (tmp_path / "m.csv").write_text("path,digit,animal\n" + rows)
    clip = ["--frames", "4", "--frame-step", "1", "--crop", "32", "--threads", "1", "--precision", "fp32"]
    probe_args = ["--epochs", "1", "--depth", "0", "--num-heads", "2", "--method", "attentive", *clip]
    manifests = ["--train-manifest", str(tmp_path / "m.csv"), "--val-manifest", str(tmp_path / "m.csv")]
    tool = load_tool("probe")
    assert tool.main(["--checkpoint", str(tmp_path / "enc"), *manifests, "--label-column", "animal",
                      "--out", str(tmp_path / "probe"), *probe_args]) == 0  # fmt: skip
    assert "classes (3, numbered in this order): cat, emu, owl" in capsys.readouterr().out
    with pytest.raises(ManifestError, match=r"no column 'colour' .*\['path', 'digit', 'animal'\]"):
        tool.main(["--checkpoint", str(tmp_path / "enc"), *manifests, "--label-column", "colour", *probe_args])
    embed = load_tool("embed")
    assert embed.main(["--checkpoint", str(tmp_path / "enc"), "--manifest", str(tmp_path / "m.csv"),
                       "--label-column", "digit", "--out", str(tmp_path / "emb"), "--frames", "4", "--frame-step", "1",
                       "--crop", "32", "--outputs", "pooled", "--no-progress", "--precision", "fp32"]) == 0  # fmt: skip
    assert load_embeddings(tmp_path / "emb").labels.tolist() == digits
    capsys.readouterr()
    assert load_tool("classify").main(["--checkpoint", str(tmp_path / "enc"), "--probe", str(tmp_path / "probe"),
                                       *clip[:6], str(tmp_path / "m.csv"), "--label-column", "digit"]) == 0  # fmt: skip
    assert len(capsys.readouterr().out.strip().splitlines()) == len(paths)
