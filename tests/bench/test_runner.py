"""The benchmark runner: a reduced run on a synthetic zoo, and its parts on hand-worked cases."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from zoolens.bench.data import (
    PlanSettings,
    capped_training_mask,
    lineage_roots,
    make_plan,
    pick_heldout,
    write_subzoo,
)
from zoolens.bench.measure import make_views, subset_retrieval
from zoolens.bench.report import aggregate, fmt, json_safe
from zoolens.bench.transfer import (
    NetModule,
    TransferRunner,
    TransferSettings,
    prepare_for_task,
)
from zoolens.eval.retrieval import retrieval_metrics
from zoolens.ir import Net, load_net
from zoolens.zoo import Zoo
from zoolens.zoo.archs import ArchSpec, build_model

#: Four tasks sharing the 16-feature input (so transfer has candidates), plus INRs.
TASKS = {"blobs": 4, "synth-a": 4, "synth-b": 4, "moons": 2}
SPLITS = ["train", "train", "train", "val", "test", "test"]


def _net(family: str, shape: tuple[int, ...], n_out: int, seed: int, act: str = "relu") -> Net:
    torch.manual_seed(seed)
    model = build_model(ArchSpec(family, shape, n_out, depth=1, width=8, activation=act))
    net = load_net(model.eval(), input_shape=shape)
    assert isinstance(net, Net)
    return net


def _items() -> list[tuple[Net, dict[str, Any]]]:
    items: list[tuple[Net, dict[str, Any]]] = []
    rng = np.random.default_rng(0)
    for t, (task, n_out) in enumerate(TASKS.items()):
        for j, split in enumerate(SPLITS):
            family = ("mlp", "resmlp")[j % 2]
            row = {
                "task": task,
                "family": family,
                "kind": "classification",
                "accuracy": float(rng.uniform(0.3, 1.0)),
                "split": split,
                "input_shape": "16",
                "n_outputs": n_out,
            }
            items.append((_net(family, (16,), n_out, 10 * t + j), row))
    parent_net, parent_row = items[4]  # a test model gets a fine-tuned child
    items.append((parent_net.clone(), dict(parent_row)))
    for j in range(6):
        row = {
            "task": "inr-digits",
            "family": "inr-relu",
            "kind": "inr",
            "label": j % 2,
            "image_index": j,
            "split": "test" if j >= 4 else "train",
            "input_shape": "2",
            "n_outputs": 1,
        }
        items.append((_net("mlp", (2,), 1, 100 + j), row))
    for i, (_, row) in enumerate(items):
        row.update(id=f"m{i:03d}", index=i)
    items[24][1]["parent"] = items[4][1]["id"]  # the child of test model 4
    return items


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    from zoolens.zoo.importers import write_zoo

    return write_zoo(_items(), str(tmp_path_factory.mktemp("zoo") / "synthetic"))


@pytest.fixture(scope="module")
def report(zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick benchmark run through the CLI: a trained, a fitted and a fixed encoder."""
    from typer.testing import CliRunner

    from zoolens.cli import app

    out = tmp_path_factory.mktemp("bench") / "report"
    args = [
        "benchmark",
        "--zoo",
        zoo.path,
        "--out",
        str(out),
        "--quick",
        "--encoders",
        "neural-graph,flat-pca,weight-stats",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


# -- the end-to-end run ---------------------------------------------------------------------------
def test_report_files_exist(report: Path) -> None:
    text = (report / "report.md").read_text()
    assert text.startswith("# zoolens benchmark")
    for section in (
        "## Headline",
        "Retrieval — relevance: same lineage",
        "Transfer by fine",
        "Generalisation",
        "Seed paper's published numbers",
        "0.7279",
        "alpha chosen from 13 values in [0.001, 1000]",
        "weight decay chosen from {0.1, 1, 10, 100} by an inner 3-fold CV",
    ):
        assert section in text
    for png in (
        "precision_at_k.png",
        "radar.png",
        "tsne_by_task.png",
        "tsne_by_family.png",
        "training_curves.png",
        "robustness_hist.png",
        "transfer.png",
    ):
        data = (report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in text


def test_results_structure(report: Path) -> None:
    res = json.loads((report / "results.json").read_text())
    assert {"encoders", "zoo", "command", "seeds", "protocol", "published"} <= set(res)
    assert res["command"].startswith("zoolens benchmark")
    assert res["zoo"]["n_models"] == 31
    assert res["failures"] == {}
    assert list(res["encoders"]) == ["neural-graph", "flat-pca", "weight-stats"]
    sections = {
        "retrieval",
        "retrieval_family",
        "retrieval_lineage",
        "retrieval_same_shape",
        "robustness",
        "clustering",
        "accuracy_prediction",
        "transfer",
        "inr",
        "cost",
        "generalisation",
    }
    for metrics in res["encoders"].values():
        assert sections <= set(metrics)
        assert set(metrics["retrieval"]["mAP"]) == {"mean", "std"}
        assert set(metrics["robustness"]) == {"exact", "dropconnect", "noise"}
        assert {"pick_quality", "random_pick_quality"} <= set(metrics["transfer"])


def _leaves(node: Any, path: str = "") -> list[tuple[str, float | None]]:
    if isinstance(node, dict) and set(node) == {"mean", "std"}:
        return [(path, node["mean"])]
    return [leaf for k, v in node.items() for leaf in _leaves(v, f"{path}.{k}")]


def _check_range(name: str, path: str, v: float) -> None:
    leaf = path.rsplit(".", 1)[-1]
    unit = (
        "P@",
        "R@",
        "F1@",
        "mAP",
        "MRR",
        "acc@",
        "random_acc@",
        "scratch_acc@",
        "logistic_acc",
        "knn_acc",
        "pick_quality",
        "random_pick_quality",
    )
    signed = ("cos_", "spearman", "kendall_tau", "silhouette", "gain_")
    if leaf.startswith(unit):
        assert 0.0 <= v <= 1.0, (name, path, v)
    elif leaf.startswith(signed):
        assert -1.0 - 1e-9 <= v <= 1.0 + 1e-9, (name, path, v)
    elif leaf == "R2":
        assert v <= 1.0, (name, path, v)
    else:  # distances, MSE, Davies–Bouldin, counts, costs
        assert v >= 0.0, (name, path, v)


def test_results_values_in_range(report: Path) -> None:
    res = json.loads((report / "results.json").read_text())
    for name, metrics in res["encoders"].items():
        for path, v in _leaves(metrics):
            if v is not None:
                _check_range(name, path, v)
        exact = metrics["robustness"]["exact"]["cos_mean"]["mean"]
        if name == "neural-graph":  # exactly invariant by construction
            assert exact > 0.999, name
        assert metrics["cost"]["dim"]["mean"] > 0
        assert metrics["retrieval"]["n_queries"]["mean"] == 9  # the 2 test INRs differ in digit
        assert metrics["retrieval_lineage"]["n_queries"]["mean"] == 2  # parent and child
    assert res["encoders"]["neural-graph"]["cost"]["train_seconds"]["mean"] > 0


def test_quick_run_is_one_seed(report: Path) -> None:
    res = json.loads((report / "results.json").read_text())
    assert res["seeds"] == [0]
    assert res["protocol"]["quick"] is True
    assert all(m["retrieval"]["mAP"]["std"] == 0.0 for m in res["encoders"].values())
    assert (report / "runs" / "neural-graph" / "seed0" / "metrics.csv").exists()
    assert (report / "runs" / "neural-graph" / "seed0-heldout" / "metrics.csv").exists()


def test_generalisation_counterpart_never_saw_the_held_out_tasks_and_family(report: Path) -> None:
    res = json.loads((report / "results.json").read_text())
    held_tasks, held_families = (res["protocol"][k] for k in ("heldout_tasks", "heldout_families"))
    assert len(held_tasks) == 1 and len(held_families) == 1
    run = report / "runs" / "neural-graph" / "seed0-heldout" / "train_config.json"
    trained_on = json.loads(run.read_text())["trained_on"]
    assert not set(trained_on["tasks"]) & set(held_tasks)
    assert not set(trained_on["families"]) & set(held_families)
    assert trained_on["families"], "the counterpart still learnt from the other families"
    generalisation = res["encoders"]["neural-graph"]["generalisation"]
    for what in ("tasks", "families"):  # the synthetic zoo has 3 test models per task
        assert generalisation[what]["unseen"]["n_queries"]["mean"] > 0, what


# -- parts ----------------------------------------------------------------------------------------
def test_aggregate_mean_and_sample_std() -> None:
    runs = [{"a": {"x": 1.0}, "b": 2.0}, {"a": {"x": 3.0}, "b": float("nan")}]
    out = aggregate(runs)
    assert out["a"]["x"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2.0))}
    assert out["b"] == {"mean": 2.0, "std": 0.0}  # NaN ignored, one value left
    assert math.isnan(aggregate([{"c": float("nan")}])["c"]["mean"])
    assert json_safe({"v": float("nan"), "w": np.float32(1.5)}) == {"v": None, "w": 1.5}
    assert fmt({"mean": 0.5, "std": 0.25}) == "0.500 ± 0.250"
    assert fmt({"mean": 0.5, "std": 1e-17}) == "0.500"
    assert fmt({"mean": 9.0, "std": 0.0}, 0) == "9"
    assert fmt(None) == "—"


def test_lineage_roots_follow_parent_chains() -> None:
    m = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "parent": ["", "a", "b", "", "zz"]})
    assert lineage_roots(m).tolist() == ["a", "a", "a", "d", "zz"]


def test_subset_retrieval_matches_leave_one_out_on_all_queries() -> None:
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((12, 5))
    labels = np.array(list("aabbbccddeef"))
    full = retrieval_metrics(emb, labels)
    sub = subset_retrieval(emb, labels, np.ones(12, dtype=bool))
    assert sub["n_queries"] == full["n_queries"] == 11  # "f" has no relevant item
    for key in ("P@1", "R@5", "mAP", "MRR"):
        assert sub[key] == pytest.approx(full[key])
    only_b = subset_retrieval(emb, labels, labels == "b")
    assert only_b["n_queries"] == 3


def test_plan_and_subzoo(zoo: Zoo, tmp_path: Path) -> None:
    plan = make_plan(zoo.manifest, PlanSettings(n_heldout_tasks=2, n_queries=1, max_pool=5))
    assert len(plan.test_ids) == 11 and len(plan.inr_ids) == 6
    assert len(plan.heldout_tasks) == 2
    assert plan.heldout_families == ["mlp"]  # 5 test models (with the child) to resmlp's 4
    assert pick_heldout(zoo.manifest, "family", 5) == ["mlp"]  # never every family
    task = next(iter(plan.transfer_queries))
    pool_tasks = set(zoo.manifest.set_index("id").loc[plan.transfer_pool[task], "task"])
    assert task not in pool_tasks and len(plan.transfer_pool[task]) == 5
    keep = capped_training_mask(zoo.manifest, 4)
    sub = Zoo.open(write_subzoo(zoo, keep, str(tmp_path / "sub")))
    assert (sub.manifest["split"] == "train").sum() == 4
    assert "test" not in set(sub.manifest["split"])
    first = str(sub.manifest["id"].iloc[0])
    assert sub.load(first).num_params() == zoo.load(first).num_params()


def test_views_keep_function_for_exact_action(zoo: Zoo) -> None:
    nets = [zoo.load(str(i)) for i in zoo.manifest["id"][:3]]
    views, kept = make_views(nets, seed=0)
    assert kept == [0, 1, 2]
    x = torch.randn(5, 16)
    with torch.no_grad():
        for net, exact, noisy in zip(nets, views["exact"], views["noise"], strict=True):
            assert torch.allclose(net(x), exact(x), atol=1e-4)
            assert not torch.allclose(net(x), noisy(x), atol=1e-6)


def test_prepare_for_task_new_head_and_scratch() -> None:
    net = _net("mlp", (16,), 4, seed=0)
    gen = torch.Generator().manual_seed(0)
    same = prepare_for_task(net, 4, gen, scratch=False)
    assert torch.equal(same.op("head").params["weight"], net.op("head").params["weight"])
    new = prepare_for_task(net, 2, gen, scratch=False)
    assert new.op("head").params["weight"].shape == (2, 8)
    assert torch.equal(new.ops[0].params["weight"], net.ops[0].params["weight"])
    fresh = prepare_for_task(net, 4, gen, scratch=True)
    assert not torch.equal(fresh.ops[0].params["weight"], net.ops[0].params["weight"])
    module = NetModule(new)
    loss = module(torch.randn(3, 16)).sum()
    loss.backward()
    assert all(p.grad is not None for p in module.parameters())
    assert net.op("head").params["weight"].grad is None  # the original is untouched


def test_transfer_runner_picks_most_similar(zoo: Zoo) -> None:
    plan = make_plan(zoo.manifest, PlanSettings(n_transfer_tasks=1, n_queries=1, max_pool=6))
    runner = TransferRunner(plan, zoo.load, seed=0, settings=TransferSettings(k=2, budgets=(2, 4)))
    task, pool = next(iter(plan.transfer_pool.items()))
    query = plan.transfer_queries[task][0]
    emb = {i: np.eye(8)[k % 8] for k, i in enumerate(pool)}
    emb[query] = np.eye(8)[3]  # most similar to pool[3]
    assert runner.retrieved(emb)[(task, query)][0] == pool[3]
    out = runner.measure(emb)
    assert set(out) >= {"acc@2", "acc@4", "random_acc@4", "scratch_acc@4", "gain_vs_random@4"}
    assert all(0.0 <= out[f"acc@{b}"] <= 1.0 for b in (2, 4))
    assert out["gain_vs_random@4"] == pytest.approx(out["acc@4"] - out["random_acc@4"])
    assert "pick_quality" not in out  # no recorded qualities given


def test_transfer_runner_reports_source_quality_of_its_picks(zoo: Zoo) -> None:
    plan = make_plan(zoo.manifest, PlanSettings(n_transfer_tasks=1, n_queries=1, max_pool=6))
    task, pool = next(iter(plan.transfer_pool.items()))
    query = plan.transfer_queries[task][0]
    quality = {i: k / 10 for k, i in enumerate(pool)}
    settings = TransferSettings(k=2, budgets=(1,))
    runner = TransferRunner(plan, zoo.load, seed=0, settings=settings, quality=quality)
    emb = {i: np.eye(8)[k] for k, i in enumerate(pool)}
    emb[query] = (np.eye(8)[4] + 0.5 * np.eye(8)[1]) / np.sqrt(1.25)  # picks pool[4], pool[1]
    out = runner.measure(emb)
    assert out["pick_quality"] == pytest.approx((0.4 + 0.1) / 2)
    randoms = runner.random_picks[(task, query)]
    assert out["random_pick_quality"] == pytest.approx(np.mean([quality[i] for i in randoms]))


def test_unknown_encoder_or_section_is_refused(zoo: Zoo, tmp_path: Path) -> None:
    from zoolens.bench import BenchmarkConfig, run_benchmark
    from zoolens.errors import LoadError

    with pytest.raises(LoadError, match="nope"):
        run_benchmark(BenchmarkConfig(zoo.path, str(tmp_path / "a"), encoders=("nope",)))
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="bogus"):
        BenchmarkConfig(zoo.path, str(tmp_path / "b"), skip=("bogus",)).resolved()
    config = BenchmarkConfig(zoo.path, str(tmp_path / "c"), seeds=2, max_minutes=4.0)
    assert config.minutes_per_run(heldout=True) == 1.0


def test_grouped_retrieval_pools_queries_within_groups() -> None:
    from zoolens.bench.measure import grouped_retrieval

    rng = np.random.default_rng(2)
    emb = rng.standard_normal((9, 4))
    labels = np.array(list("aabbaabbc"))
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    out = grouped_retrieval(emb, labels, groups)
    parts = [retrieval_metrics(emb[groups == g], labels[groups == g]) for g in (0, 1)]
    assert out["n_queries"] == 8
    assert out["mAP"] == pytest.approx(np.mean([p["mAP"] for p in parts]))
    assert grouped_retrieval(emb[:1], labels[:1], groups[:1]) == {"n_queries": 0.0}


def test_seed_spec_cycles_through_the_runs() -> None:
    from zoolens.bench.runner import seed_spec

    assert [seed_spec("a+b", s) for s in range(4)] == ["a", "b", "a", "b"]
    assert [seed_spec("a", s) for s in range(2)] == ["a", "a"]


def test_pretrained_encoder_is_measured_as_is(zoo: Zoo, report: Path, tmp_path: Path) -> None:
    """The seed-0 run of the quick benchmark, given back as pretrained, scores the same."""
    from zoolens.bench import BenchmarkConfig, run_benchmark

    runs = report / "runs" / "neural-graph"
    config = BenchmarkConfig(
        zoo.path,
        str(tmp_path / "p"),
        encoders=("neural-graph",),
        quick=True,
        skip=("transfer", "figures"),
        pretrained={"neural-graph": str(runs / "seed0")},
        pretrained_heldout={"neural-graph": str(runs / "seed0-heldout")},
    )
    full = run_benchmark(config)
    res = full["encoders"]["neural-graph"]
    assert any("neural-graph is pretrained" in note for note in full["notes"])
    first = json.loads((report / "results.json").read_text())["encoders"]["neural-graph"]
    assert not (tmp_path / "p" / "runs" / "neural-graph").exists()  # nothing was trained
    for path in ("retrieval", "generalisation.tasks.unseen", "generalisation.families.unseen"):
        got, want = res, first
        for key in path.split("."):
            got, want = got[key], want[key]
        assert got["mAP"]["mean"] == pytest.approx(want["mAP"]["mean"], abs=1e-9), path
    assert res["cost"]["train_seconds"]["mean"] > 0  # read from the run's metrics.csv
    swapped = {"neural-graph": f"{runs / 'seed0-heldout'}+{runs / 'seed0'}"}  # the 2nd saw all
    with pytest.raises(ValueError, match="was trained on"):
        run_benchmark(replace(config, out=str(tmp_path / "q"), pretrained_heldout=swapped))
    old = tmp_path / "old-run"  # a counterpart from before --exclude-families existed
    shutil.copytree(runs / "seed0-heldout", old)
    train_config = json.loads((old / "train_config.json").read_text())
    del train_config["trained_on"]["families"]
    (old / "train_config.json").write_text(json.dumps(train_config))
    with pytest.raises(ValueError, match="predates --exclude-families"):
        run_benchmark(
            replace(config, out=str(tmp_path / "r"), pretrained_heldout={"neural-graph": str(old)})
        )


def test_fingerprint_encoder_also_reports_its_learned_columns(
    zoo: Zoo, report: Path, tmp_path: Path
) -> None:
    """A pretrained run with its fingerprint set gets learned-column accuracy prediction
    and a report section for it; the plain run gets neither."""
    from zoolens.bench import BenchmarkConfig, run_benchmark
    from zoolens.nn import load_encoder

    plain = report / "runs" / "neural-graph" / "seed0"
    hybrid = tmp_path / "hybrid"
    kept = next(plain / d for d in ("best", "last") if (plain / d).is_dir())  # as the benchmark
    load_encoder(str(kept)).with_fingerprint(0.3).save(str(hybrid / "best"))
    for fname in ("metrics.csv", "train_config.json"):
        shutil.copy(plain / fname, hybrid / fname)
    config = BenchmarkConfig(
        zoo.path,
        str(tmp_path / "h"),
        encoders=("neural-graph",),
        quick=True,
        skip=("transfer", "figures", "generalisation"),
        pretrained={"neural-graph": str(hybrid)},
    )
    got = run_benchmark(config)["encoders"]["neural-graph"]["accuracy_prediction"]
    first = json.loads((report / "results.json").read_text())["encoders"]["neural-graph"]
    assert "ridge_learned" not in first["accuracy_prediction"]
    assert "learned columns alone" not in (report / "report.md").read_text()
    assert "learned columns alone" in (tmp_path / "h" / "report.md").read_text()
    names = {
        f"{m}{part}{cv}"
        for m in ("ridge", "mlp")
        for part in ("", "_learned")
        for cv in ("", "_seen")
    }
    assert set(got) == names


def test_accuracy_prediction_of_the_learned_columns_reads_only_them() -> None:
    """``*_learned`` is the same regression on the first `module_dim` columns; the full
    embedding's differs when the appended columns carry signal."""
    from types import SimpleNamespace

    from zoolens.bench.measure import EncoderMeasurement, SeedData
    from zoolens.eval.prediction import accuracy_prediction

    rng = np.random.default_rng(0)
    n, k = 40, 6
    ids = [f"m{i}" for i in range(n)]
    acc = rng.uniform(0.2, 1.0, n)
    tasks = np.repeat(["a", "b", "c", "d"], n // 4)
    manifest = pd.DataFrame({"kind": "classification", "accuracy": acc, "task": tasks}, index=ids)
    emb = np.hstack([rng.normal(size=(n, k)), acc[:, None] + 0.05 * rng.normal(size=(n, 2))])
    data = SeedData(manifest, SimpleNamespace(test_ids=ids), {}, seed=3)  # type: ignore[arg-type]
    prepared = SimpleNamespace(encoder=SimpleNamespace(module_dim=k))
    m = EncoderMeasurement(prepared, data, None)  # type: ignore[arg-type]
    m.embeddings = dict(zip(ids, emb, strict=True))
    out = m.accuracy_prediction()
    for model in ("ridge", "mlp"):
        want = accuracy_prediction(emb[:, :k], acc, tasks, model=model, seed=3)
        assert out[f"{model}_learned"] == pytest.approx(want)
        seen = accuracy_prediction(emb[:, :k], acc, None, model=model, seed=3)
        assert out[f"{model}_learned_seen"] == pytest.approx(seen)
    assert out["ridge"]["R2"] > 0.8 > out["ridge_learned"]["R2"]
    plain = SimpleNamespace(encoder=SimpleNamespace(module_dim=k + 2))  # learns every column
    m = EncoderMeasurement(plain, data, None)  # type: ignore[arg-type]
    m.embeddings = dict(zip(ids, emb, strict=True))
    assert set(m.accuracy_prediction()) == {"ridge", "ridge_seen", "mlp", "mlp_seen"}
