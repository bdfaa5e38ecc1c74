"""The online probe during pretraining: its scores land in metrics.jsonl at its cadence, it
leaves the loss curve alone, and a manifest it cannot use stops the run before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train import compose_cfg, tiny_overrides

from jepa.data.synthetic import make_synthetic_dataset
from jepa.train.logging import read_metrics
from jepa.train.trainer import train


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe_set")
    return make_synthetic_dataset(root, num_videos=12, num_frames=12, size=32, seed=5).parent / "class_all.csv"


def test_online_probe_logs_at_its_cadence_and_keeps_the_curve(tmp_path: Path, labelled: Path) -> None:
    cache = tmp_path / "cache"
    plain = train(compose_cfg([*tiny_overrides(tmp_path / "plain", cache, 4), "trainer.tensorboard=false"]))
    probed_dir = tmp_path / "probed"
    probe = [f"trainer.online_probe.manifest={labelled}", "trainer.online_probe.every=3"]
    train(compose_cfg([*tiny_overrides(probed_dir, cache, 4), *probe]))
    records = read_metrics(probed_dir)
    assert [r["step"] for r in records if "probe_linear" in r] == [2, 3]  # every 3 steps and the last
    for r in records:
        if "probe_linear" in r:
            assert 0 <= r["probe_linear"] <= 100 and 0 <= r["probe_knn"] <= 100
    assert [r["loss"] for r in records] == [r["loss"] for r in read_metrics(tmp_path / "plain")]
    assert plain["last_loss"] == records[-1]["loss"]
    assert list((probed_dir / "tb").rglob("events.out.tfevents.*"))


def test_online_probe_refuses_an_unlabelled_manifest_before_any_work(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    videos = make_synthetic_dataset(tmp_path / "set", num_videos=6, num_frames=12, size=32, seed=1).parent
    (tmp_path / "unlabelled.csv").write_text("path\n" + "".join(f"{videos}/videos/{i:06d}.mp4\n" for i in range(6)))
    cfg = compose_cfg(
        [*tiny_overrides(tmp_path / "run", cache, 2), f"trainer.online_probe.manifest={tmp_path / 'unlabelled.csv'}"]
    )
    with pytest.raises(ValueError, match="no label"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
