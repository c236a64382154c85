import dataclasses

import pytest
import torch

from cliptune import data, evaluate, methods, train


@pytest.fixture(scope="module")
def few_shot_set():
    return data.few_shot(data.tiny("shapes", "train"), 4, seed=1)


def _run(clip, ds, cfg, checkpoint=None):
    m = methods.create("coop", clip).attach(clip, ds.classnames)
    hist = train.fit(m, ds, cfg, checkpoint=checkpoint, progress=False)
    return m, hist


def test_same_seed_same_numbers(tiny_clip, few_shot_set):
    cfg = train.TrainConfig(epochs=2, batch_size=8, seed=5)
    a, ha = _run(tiny_clip, few_shot_set, cfg)
    b, hb = _run(tiny_clip, few_shot_set, cfg)
    c, _ = _run(tiny_clip, few_shot_set, dataclasses.replace(cfg, seed=6))
    assert ha["loss"] == hb["loss"] and torch.equal(a.ctx, b.ctx)
    assert not torch.equal(a.ctx, c.ctx)


def test_resume_reproduces_uninterrupted_run(tiny_clip, few_shot_set, tmp_path):
    cfg = train.TrainConfig(epochs=3, batch_size=8, seed=2, checkpoint_every=4)
    ref, _ = _run(tiny_clip, few_shot_set, cfg)
    ckpt = tmp_path / "coop.safetensors"
    # interrupt: a run capped at 6 steps leaves its checkpoint of step 4 behind
    interrupted = methods.create("coop", tiny_clip).attach(tiny_clip, few_shot_set.classnames)
    real = train._checkpoint

    def stop_after_checkpoint(*args):
        real(*args)
        raise KeyboardInterrupt
    train._checkpoint = stop_after_checkpoint
    try:
        with pytest.raises(KeyboardInterrupt):
            train.fit(interrupted, few_shot_set, cfg, checkpoint=ckpt, progress=False)
    finally:
        train._checkpoint = real
    assert ckpt.with_suffix(".partial.pt").exists() and not ckpt.exists()
    resumed, hist = _run(tiny_clip, few_shot_set, cfg, checkpoint=ckpt)
    assert torch.allclose(resumed.ctx, ref.ctx, atol=1e-7)
    assert ckpt.exists() and not ckpt.with_suffix(".partial.pt").exists()
    # finished checkpoint: loaded, not retrained
    again, _ = _run(tiny_clip, few_shot_set, cfg, checkpoint=ckpt)
    assert torch.equal(again.ctx, ref.ctx)


def test_learning_rate_schedule_follows_dassl():
    cfg = train.TrainConfig(lr=0.002, warmup_epochs=1, warmup_lr=1e-5)
    lrs = [train.learning_rate(s, 40, 10, cfg) for s in range(40)]
    assert lrs[:10] == [1e-5] * 10 and lrs[10] == pytest.approx(0.002)
    assert lrs[-1] < lrs[20] < lrs[10]


def test_training_reduces_loss_and_unknown_optimizer(tiny_clip, few_shot_set):
    m, hist = _run(tiny_clip, few_shot_set, train.TrainConfig(epochs=15, batch_size=16, lr=0.05,
                                                              warmup_epochs=0))
    assert sum(hist["loss"][-3:]) < sum(hist["loss"][:3])
    with pytest.raises(ValueError, match="unknown optimizer"):
        train.fit(m, few_shot_set, train.TrainConfig(optimizer="lion"), progress=False)


def test_evaluate_refuses_mismatched_classes(tiny_clip):
    ds = data.tiny("shapes", "test")
    zs = methods.create("zero-shot", tiny_clip).attach(tiny_clip, ("a", "b"))
    with pytest.raises(ValueError, match="attach"):
        evaluate.accuracy(zs, ds)
    assert evaluate.harmonic_mean(50, 100) == pytest.approx(66.6666, rel=1e-4)


def test_unknown_method_and_setting(tiny_clip):
    with pytest.raises(KeyError, match="unknown method 'copo'"):
        methods.create("copo", tiny_clip)
    with pytest.raises(TypeError, match="no setting"):
        methods.create("coop", tiny_clip, n_context=3)


def test_width_mismatch_and_corrupt_module(tiny_clip, wide_clip, tmp_path):
    coop = methods.create("coop", tiny_clip)
    with pytest.raises(methods.WidthMismatchError, match="text width 64.*text width 96"):
        coop.attach(wide_clip, ("a", "b"))
    path = tmp_path / "coop.safetensors"
    coop.save(path)
    with pytest.raises(methods.WidthMismatchError):
        methods.load(path, wide_clip)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt"):
        methods.load(path, tiny_clip)


def test_standalone_class_weights(tiny_clip):
    coop = methods.create("coop", tiny_clip)
    w = methods.class_weights(coop, tiny_clip, ("red star", "blue circle"))
    assert w.shape == (2, 64) and torch.allclose(w.norm(dim=-1), torch.ones(2))


def test_fit_records_the_full_set_objective_at_the_tail_and_end(tiny_clip, few_shot_set):
    cfg = train.TrainConfig(epochs=4, batch_size=8, seed=3, lr=0.01)
    m, hist = _run(tiny_clip, few_shot_set, cfg)
    total = len(hist["loss"])
    tail = train.objective_tail_start(total, train.steps_per_epoch(len(few_shot_set), 8), cfg)
    assert 0 < tail < total and hist["objective_step"] == [0, tail, total]
    # the end value is the un-augmented loss of the trained prompts over the whole set
    m.train()
    again = train.objective(m, few_shot_set, None, cfg, total - 1)
    assert again == pytest.approx(hist["objective"][2], rel=1e-5)
    # training lowered it, and the prompts still moved during the tail
    assert hist["objective"][0] > hist["objective"][2] != hist["objective"][1]


def test_a_diverging_run_says_so_once(tiny_clip, few_shot_set):
    cfg = train.TrainConfig(epochs=1, batch_size=8, seed=1, max_steps=3)
    m = methods.create("coop", tiny_clip).attach(tiny_clip, few_shot_set.classnames)
    real = m.loss

    def exploding(batch, logits):
        loss, logs = real(batch, logits)
        return loss * float("inf") if batch.step >= 1 else loss, logs
    m.loss = exploding
    with pytest.warns(RuntimeWarning, match="not finite from step 1"):
        hist = train.fit(m, few_shot_set, cfg, progress=False)
    assert hist["diverged_at"] == 1


def test_paper_config_takes_the_papers_recipe_and_marks_it():
    base = train.TrainConfig(seed=3, n_views=2, max_steps=7)
    maple = train.paper_config("maple", base)
    assert (maple.epochs, maple.batch_size, maple.lr, maple.optimizer) == (5, 4, 3.5e-3, "sgd")
    assert (maple.seed, maple.n_views, maple.max_steps) == (3, 2, 7) and "MaPLe" in maple.paper
    assert train.paper_config("coop", shots=1).epochs == 50
    assert train.paper_config("coop", shots=16).epochs == 200
    tip = train.paper_config("tip-adapter-f")
    assert (tip.optimizer, tip.batch_size, tip.lr) == ("adamw", 256, 1e-3)
    assert not train.TrainConfig().paper
    with pytest.raises(KeyError, match="no published recipe for 'flyp'.*plateau"):
        train.paper_config("flyp")


def test_recipe_is_the_papers_else_the_workbooks_own_else_nothing(capsys):
    coop1, coop16 = train.recipe("coop", shots=1), train.recipe("coop", shots=16, max_steps=5)
    assert (coop1.epochs, coop16.epochs, coop16.max_steps) == (50, 200, 5)
    assert coop16 == train.paper_config("coop", train.TrainConfig(max_steps=5))  # shared ckpts
    assert train.recipe("tip-adapter-f").warmup_epochs == 0  # Tip-Adapter: no warm-up
    assert train.recipe("maple").warmup_epochs == 1  # Dassl: one warm-up epoch
    probe = train.recipe("linear-probe-zs")
    assert probe.paper == "" and probe.epochs == 200  # own schedule: must show a plateau
    assert train.recipe("zero-shot") is None and train.recipe("tip-adapter") is None
    df = train.recipe_table({"CoOp": coop16, "probe": probe})
    out = capsys.readouterr().out
    assert df.loc["CoOp", "epochs"] == 200 and "CoOp configs" in out and "own" in out


def test_fit_records_the_paper_recipe_in_the_history(tiny_clip, few_shot_set):
    m = methods.create("coop", tiny_clip).attach(tiny_clip, few_shot_set.classnames)
    cfg = dataclasses.replace(train.paper_config("coop"), max_steps=2)
    hist = train.fit(m, few_shot_set, cfg, progress=False)
    assert hist["paper_recipe"] == cfg.paper
    own = train.fit(m, few_shot_set, train.TrainConfig(max_steps=2), progress=False)
    assert "paper_recipe" not in own


def test_diverged_runs_are_printed_not_warned(capsys):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the block fails the test
        with train.diverged_runs() as caught:
            warnings.warn("coop on x: the run diverged", train.DivergedWarning)
    assert caught == ["coop on x: the run diverged"]
    assert "diverged: coop on x" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="other"):
        with train.diverged_runs():
            warnings.warn("other")


def test_finetune_config_warms_up_over_its_steps_then_decays_to_the_last_step():
    cfg = train.finetune_config(n_train=960, steps=1000, lr=1e-3, batch_size=64, warmup_steps=10)
    assert (cfg.optimizer, cfg.weight_decay, cfg.max_steps, cfg.grad_clip) == ("adamw", 0.1, 1000,
                                                                               1.0)
    spe = train.steps_per_epoch(960, 64)
    lrs = [train.learning_rate(s, 1000, spe, cfg) for s in (0, 5, 10, 500, 999)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3, rel=0.01)  # linear warm-up, 10 steps
    assert lrs[2] > lrs[3] > lrs[4]  # then cosine decay
